"""Hostile and careless recipes and checkpoints, a fourth round: each refused when it is loaded, with
an error naming the file and (for a recipe) the dotted field, within bounded time and memory.

Recipes: typos answered with the field meant, booleans that are not true or false, numbers past any
sense a run could make of them, a hub model that is neither a folder nor a hub id, reward weights
whose sum overflows, DeepSpeed files that are not a JSON object; YAML that PyYAML reads its own way
(merge keys, tabs, a BOM, UTF-16, deep flow nesting, timestamps). Checkpoints: a config counting more
layers than its weights hold, settings files of the wrong shape or size, nesting transformers
recurses through, library errors that named no file (tokenizer.json, config.json's types), chat
templates linked out, piped, not UTF-8 or not compiling, image processor settings that upscale every
image or divide by zero, pickle weights by an upper-case suffix."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from guards import alarm, cpu_seconds_limit

from medmo_pipeline import recipe_schema
from medmo_pipeline.config import RecipeError, load_recipe
from medmo_pipeline.model.loading import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    check_json_files,
    load_model,
    load_processor,
)
from medmo_pipeline.recipe_schema import RECIPES_DIR
from tests.conftest import embedded_recipe_data, write_recipe

EMBEDDED = (RECIPES_DIR / "embedded.yaml").read_text()


def _refused(path: Path) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


def _mutated(tmp_path: Path, *keys_and_value) -> Path:
    data = copy.deepcopy(embedded_recipe_data())
    *keys, last, value = keys_and_value
    target = data
    for key in keys:
        target = target[key]
    target[last] = value
    return write_recipe(tmp_path / "recipe.yaml", data)


# ---- recipes: what a careless user writes ---------------------------------------------------------


@pytest.mark.parametrize(("keys", "meant"), [
    (("evalution",), "evaluation"),
    (("stages", "stage1", "optm"), "optim"),
    (("stages", "stage1", "optim", "learning_rat"), "learning_rate"),
    (("rl", "grpo", "num_generation"), "num_generations"),
    (("corpus", "synthetic", "image_sise"), "image_size"),
])
def test_a_misspelled_key_is_answered_with_the_field_it_is_closest_to(tmp_path, keys, meant):
    message = _refused(_mutated(tmp_path, *keys, 1))
    assert f"{'.'.join(keys)}: unknown field; did you mean {meant!r}?" in message, message


def test_an_unknown_key_like_no_field_lists_the_fields_there(tmp_path):
    """There is no include or inheritance of recipes: such a key is unknown, and the error lists what
    the recipe's top level takes."""
    message = _refused(_mutated(tmp_path, "include", "paper.yaml"))
    assert "  - include: unknown field (fields here: base_model, corpus, description, evaluation" in message


@pytest.mark.parametrize(("keys", "value"), [
    (("base_model", "trust_remote_code"), 1),  # pydantic took 1 for true: remote code on
    (("base_model", "trust_remote_code"), "yes"),  # quoted: YAML's yes is a text, pydantic's true
    (("base_model", "allow_pickle"), "on"),
    (("stages", "stage1", "optim", "bf16"), "true"),
    (("stages", "stage1", "optim", "trainer_args"), {"logging_first_step": 1}),
])
def test_a_boolean_field_takes_only_true_or_false(tmp_path, keys, value):
    message = _refused(_mutated(tmp_path, *keys, value))
    field = ".".join(keys) + (".logging_first_step" if keys[-1] == "trainer_args" else "")
    assert f"{field}: {value if not isinstance(value, dict) else 1!r} is not true or false" in message, message


def test_yaml_true_and_false_still_load(tmp_path):
    assert load_recipe(_mutated(tmp_path, "stages", "stage1", "optim", "bf16", True)).stages["stage1"].optim.bf16


@pytest.mark.parametrize(("keys", "value"), [
    (("corpus", "shard_rows"), 10**30),  # rows held while a shard is written
    (("corpus", "curation_parts"), 10**9),  # processes started side by side
    (("corpus", "synthetic", "train_rows", "synth_xray"), 10**30),
    (("base_model", "tokenizer_training_rows"), 10**12),
    (("rl", "mixture", "shuffle_window"), 10**9),  # rows each source holds in memory
    (("rl", "mixture", "max_samples"), 10**30),
    (("rl", "grpo", "num_generations"), 10**30),
    (("rl", "grpo", "max_completion_length"), 10**30),
    (("rl", "grpo", "beta"), 1e300),
    (("stages", "stage1", "optim", "weight_decay"), 1e300),
    (("stages", "stage1", "optim", "logging_steps"), 10**30),
    (("stages", "stage1", "optim", "save_steps"), 10**30),
    (("evaluation", "batch_size"), 10**30),
    (("evaluation", "max_new_tokens", "vqa"), 10**30),
])
def test_numbers_past_any_sense_a_run_makes_of_them_are_refused_naming_the_field(tmp_path, keys, value):
    if keys[0] == "evaluation" and keys[-1] == "vqa":
        keys, value = keys[:-1], {"vqa": value}
    path = _mutated(tmp_path, *keys, value)
    with cpu_seconds_limit(5):
        message = _refused(path)
    field = ".".join(keys) + (".vqa" if isinstance(value, dict) else "")
    assert f"  - {field}: Input should be less than or equal to" in message, message


def test_a_reward_weight_whose_sum_would_overflow_is_refused(tmp_path):
    message = _refused(_mutated(tmp_path, "rl", "rewards", "box", "weight", 1e308))
    assert "rl.rewards.box.weight: 1e+308: weights are relative, at most 1e+09" in message, message


@pytest.mark.parametrize("name", ["/no/such/folder", "./models/qwen", "~/models/qwen", "../qwen", "Qwen/Qwen3 VL 8B",
                                  "x" * 300])
def test_a_hub_model_that_is_neither_a_folder_nor_a_hub_id_is_refused_at_load(tmp_path, name):
    message = _refused(_mutated(tmp_path, "base_model", {"source": "hub", "name_or_path": name}))
    assert "base_model.name_or_path:" in message and "neither a local directory nor a hub id" in message, message


def test_a_hub_id_and_a_local_folder_load(tmp_path):
    for name in ("Qwen/Qwen3-VL-8B-Instruct", str(tmp_path)):
        recipe = load_recipe(_mutated(tmp_path, "base_model", {"source": "hub", "name_or_path": name}))
        assert recipe.base_model.name_or_path == name


@pytest.fixture
def deepspeed_dir(tmp_path, monkeypatch) -> Path:
    """A recipes folder whose deepspeed/ holds the shipped files, for files a test adds beside them."""
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES_DIR / "deepspeed", recipes / "deepspeed")
    monkeypatch.setattr(recipe_schema, "RECIPES_DIR", recipes)
    return recipes / "deepspeed"


@pytest.mark.parametrize(("content", "says"), [
    (b'{"zero_optimization": {"stage": 2,}', "not a JSON file"),
    (b"[1, 2]", "a JSON list, not the object DeepSpeed reads"),
    (b"[" * 100_000 + b"]" * 100_000, "not a JSON file (RecursionError"),
    (b'{"bf16": "\xe9"}', "not a JSON file (UnicodeDecodeError"),
    (None, "bytes, over the 1048576"),  # a sparse file of a gigabyte: refused by its size, never read
])
def test_a_deepspeed_file_that_is_not_a_json_object_is_refused_at_load(tmp_path, deepspeed_dir, content, says):
    path = deepspeed_dir / "mine.json"
    if content is None:
        with open(path, "wb") as handle:
            handle.truncate(1 << 30)
    else:
        path.write_bytes(content)
    recipe = _mutated(tmp_path, "stages", "stage1", "optim", "deepspeed", "mine.json")
    with cpu_seconds_limit(5):
        message = _refused(recipe)
    assert "stages.stage1.optim.deepspeed:" in message and "mine.json" in message and says in message, message


def test_a_deepspeed_file_linked_out_of_recipes_deepspeed_is_refused(tmp_path, deepspeed_dir):
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    (deepspeed_dir / "mine.json").symlink_to(outside)
    message = _refused(_mutated(tmp_path, "stages", "stage1", "optim", "deepspeed", "mine.json"))
    assert "stages.stage1.optim.deepspeed: 'mine.json' leaves recipes/deepspeed/" in message, message


# ---- recipes: YAML as PyYAML reads it ---------------------------------------------------------------


def test_a_merge_key_with_an_alias_loads_and_an_explicit_key_wins(tmp_path):
    text = EMBEDDED.replace("  stage1:\n    parent: base_model\n",
                            "  stage1:\n    <<: &defaults {parent: base_model, purpose: merged}\n"
                            "    parent: base_model\n")
    recipe = load_recipe(write_text(tmp_path / "merge.yaml", text))
    assert recipe.stages["stage1"].purpose == "general image-text alignment (captions and VQA) at lower resolution"


@pytest.mark.parametrize(("raw", "says"), [
    (EMBEDDED.replace("  source: tiny", "\tsource: tiny").encode(),
     "found character '\\t' that cannot start any token (line 9, column 1)"),
    (EMBEDDED.encode("utf-16"), "not UTF-8 at line 1"),
    (EMBEDDED.replace("seed: 42", "seed: 2001-12-14").encode(), "  - seed: Input should be a valid integer"),
    (b"x: " + b"[" * 100_000 + b"]" * 100_000 + b"\n" + EMBEDDED.encode(), "nested too deeply to read"),
    (b"x: " + b"{a: " * 100_000 + b"1" + b"}" * 100_000 + b"\n" + EMBEDDED.encode(), "nested too deeply to read"),
])
def test_yaml_pyyaml_reads_its_own_way_is_refused_naming_the_file(tmp_path, raw, says):
    path = tmp_path / "odd.yaml"
    path.write_bytes(raw)
    with cpu_seconds_limit(10):
        message = _refused(path)
    assert message.startswith(str(path)) and says in message, message


def test_a_byte_order_mark_is_read_past(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + EMBEDDED.encode())
    assert load_recipe(path).name == "embedded"


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- checkpoints ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from medmo_pipeline.data import synthetic
    from medmo_pipeline.model.tiny import build_tiny_base_model

    texts = synthetic.iter_texts(r for s in synthetic.SYNTHETIC_SOURCES for r in synthetic.generate_rows(s, "train", 20))
    return build_tiny_base_model(tmp_path_factory.mktemp("tiny") / "base", texts=texts, spec={}, seed=1)


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path) -> Path:
    copy_ = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy_)
    return copy_


def _edit_json(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def _refused_checkpoint(load, directory: Path) -> str:
    with cpu_seconds_limit(20), pytest.raises(CorruptCheckpointError) as info:
        load(directory)
    return str(info.value)


def test_a_config_counting_more_layers_than_its_weights_hold_is_refused_before_any_is_built(checkpoint):
    """transformers builds every layer before it reads a weight: 10**6 layers ran for minutes and out
    of memory."""
    _edit_json(checkpoint / "config.json", lambda config: config["text_config"].update(num_hidden_layers=10**6))
    message = _refused_checkpoint(load_model, checkpoint)
    assert f"{checkpoint}/config.json: text_config.num_hidden_layers is 1000000, more layers than the" in message


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json", "processor_config.json", "tokenizer.json"])
def test_a_settings_file_that_is_not_an_object_is_refused_naming_it(checkpoint, name):
    (checkpoint / name).write_text("[1, 2]")
    for load in (load_model, load_processor):
        assert f"{checkpoint}/{name}: a JSON list, not the object it holds" in _refused_checkpoint(load, checkpoint)


def test_json_nested_deeper_than_transformers_recurses_is_refused_naming_it(checkpoint):
    _edit_json(checkpoint / "config.json", lambda config: config.update(junk=json.loads("[" * 500 + "]" * 500)))
    message = _refused_checkpoint(load_model, checkpoint)
    assert f"{checkpoint}/config.json: nested 65 deep, more than the 64" in message, message


def test_a_config_of_a_gigabyte_is_refused_by_its_size_before_it_is_read(checkpoint):
    with open(checkpoint / "config.json", "r+b") as handle:
        handle.truncate(1 << 30)  # sparse: nothing on disk
    message = _refused_checkpoint(check_json_files, checkpoint)
    assert f"{checkpoint}/config.json: 1073741824 bytes, over the 4194304" in message, message


@pytest.mark.parametrize(("edit", "says"), [
    (lambda config: config["text_config"].update(hidden_size="64"), "hidden_size"),
    (lambda config: config["text_config"].update(hidden_size=-64), "negative dimension"),
    (lambda config: config.update(vision_config=[1]), "vision_config"),
    (lambda config: config.update(model_type="not_a_model"), "not_a_model"),
    (lambda config: config.update(dtype="float1024"), "float1024"),
])
def test_a_config_transformers_cannot_build_from_is_named(checkpoint, edit, says):
    """Its errors named no file: StrictDataclassFieldValidationError, "Trying to create tensor with
    negative dimension", "The checkpoint you are trying to load has model type"."""
    _edit_json(checkpoint / "config.json", edit)
    message = _refused_checkpoint(load_model, checkpoint)
    assert message.startswith(f"{checkpoint}: its config.json") and says in message, message


@pytest.mark.parametrize(("edit", "says"), [
    (lambda tokenizer: tokenizer["model"].update(type="Evil"), "untagged enum ModelUntagged"),
    (lambda tokenizer: tokenizer.update(pre_tokenizer={"type": "Split", "pattern": {"Regex": "(("},
                                                       "behavior": "Isolated", "invert": False}), "Oniguruma error"),
    (lambda tokenizer: tokenizer.clear(), "Model missing"),
])
def test_a_tokenizer_json_the_tokenizers_library_refuses_is_named_by_both_loaders(checkpoint, edit, says):
    _edit_json(checkpoint / "tokenizer.json", edit)
    for load in (load_model, load_processor):
        message = _refused_checkpoint(load, checkpoint)
        assert f"{checkpoint}/tokenizer.json: not a tokenizer the tokenizers library reads (" in message
        assert says in message


@pytest.mark.parametrize(("make", "says"), [
    (lambda path: (path.unlink(), path.symlink_to("/etc/passwd")), "resolves to /etc/passwd, outside the checkpoint"),
    (lambda path: (path.unlink(), os.mkfifo(path)), "not a regular file"),
    (lambda path: path.write_bytes(b"\xe9\xff{{ x }}"), "not UTF-8 text at line 1"),
    (lambda path: path.write_text("{% for %}"), "the chat template does not compile (TemplateSyntaxError"),
    (lambda path: path.write_text("{{ 'x' }}" * 100_000), "a chat template of 900000 characters, over the"),
    (lambda path: path.write_text("{% if a %}" * 5_000 + "{% endif %}" * 5_000), "does not compile (RecursionError"),
])
def test_a_hostile_chat_template_is_refused_naming_it(checkpoint, make, says):
    make(checkpoint / "chat_template.jinja")
    with alarm(60):
        message = _refused_checkpoint(load_processor, checkpoint)
    assert message.startswith(f"{checkpoint}/chat_template.jinja: ") and says in message, message


@pytest.mark.parametrize(("settings", "says"), [
    ({"size": {"shortest_edge": 10**13, "longest_edge": 10**14}}, "is not a pixel budget from 1 to 268435456"),
    ({"size": {"shortest_edge": 10**6, "longest_edge": 100}}, "with the shortest edge at most the longest"),
    ({"patch_size": 0}, "{'patch_size': 0} are not whole numbers"),
    ({"merge_size": "2"}, "{'merge_size': '2'} are not whole numbers"),
])
def test_image_processor_settings_that_upscale_every_image_or_divide_by_zero_are_refused(checkpoint, settings, says):
    _edit_json(checkpoint / "processor_config.json", lambda config: config["image_processor"].update(settings))
    message = _refused_checkpoint(load_processor, checkpoint)
    assert message.startswith(f"{checkpoint}/processor_config.json: image processor") and says in message, message


def test_the_tiny_checkpoint_still_loads_with_both_loaders(checkpoint):
    processor = load_processor(checkpoint)
    assert processor.image_processor.patch_size == 16
    assert type(load_model(checkpoint)).__name__ == "Qwen3VLForConditionalGeneration"


def test_pickle_weights_with_an_upper_case_suffix_are_refused(checkpoint):
    (checkpoint / "pytorch_model.BIN").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.BIN"):
        load_model(checkpoint)


def test_recipe_yaml_files_kept_beside_the_weights_do_not_stop_a_load(checkpoint):
    """A published checkpoint holds recipe.yaml, a PNG and a training log (a JSON list): only the
    files transformers reads as objects must be objects."""
    (checkpoint / "training_log.json").write_text(json.dumps([{"loss": 1.0}]))
    (checkpoint / "recipe.yaml").write_text(yaml.safe_dump({"name": "x"}))
    check_json_files(checkpoint)

"""Recipes refused at load, cheaply, naming the field: alias bombs (by the expansion limit on the
node graph, never by building the expansion), and every name or path a recipe refers to that
does not resolve (DeepSpeed configs outside recipes/deepspeed/, rewards, benchmarks, sources).

All through ``medmo_pipeline.config.load_recipe``, the one loader users, Dagster and ``medmo`` call."""

from __future__ import annotations

import importlib
import re

import pytest
import yaml
from guards import cpu_seconds_limit

from medmo_pipeline import config
from medmo_pipeline.config import MAX_RECIPE_NODES, RecipeError, load_recipe
from tests.conftest import embedded_recipe_data, write_recipe


def _refused(tmp_path, mutate) -> str:
    data = embedded_recipe_data()
    mutate(data)
    path = write_recipe(tmp_path / "recipe.yaml", data)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


def _billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines)


# Where each bomb goes in the embedded recipe: the line that opens the field, matched whatever the
# field holds today, and the indent of the field's contents
_BOMB_SITES = {
    "base_model.tiny": (r"^  tiny:.*$", "  tiny:", "    "),
    "rl.rewards.box": (r"^    box: \{.*\}.*$", "    box:", "      "),
}


@pytest.mark.parametrize("where", sorted(_BOMB_SITES))
def test_an_alias_bomb_is_refused_from_the_node_graph(tmp_path, where, monkeypatch):
    pattern, opening, indent = _BOMB_SITES[where]
    bomb = "".join(f"{indent}{line}\n" for line in _billion_laughs().splitlines())
    text, placed = re.subn(pattern, lambda _: opening + "\n" + bomb.rstrip("\n"),
                           (config.RECIPES_DIR / "embedded.yaml").read_text(), count=1, flags=re.MULTILINE)
    assert placed == 1, f"no {where} line in the embedded recipe to put the bomb in"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    built = []
    original = yaml.SafeLoader.construct_document
    monkeypatch.setattr(yaml.SafeLoader, "construct_document",
                        lambda self, node: built.append(node) or original(self, node))
    with cpu_seconds_limit(1.0), pytest.raises(
            RecipeError, match=f"bomb.yaml: aliases expand the file beyond {MAX_RECIPE_NODES} nodes"):
        load_recipe(path)
    assert built == []  # refused before a single Python object was built from it


def test_aliases_within_the_limit_still_load(tmp_path):
    text = (config.RECIPES_DIR / "embedded.yaml").read_text()
    # stage 1's learning rate becomes an anchor that stage 2's refers to, whatever their values
    rates = list(re.finditer(r"^( +learning_rate: )(\S+)", text, flags=re.MULTILINE))
    assert len(rates) >= 2, "the recipe no longer has two learning rates to alias"
    first, second = rates[0], rates[1]
    text = (text[:first.start(2)] + "&rate " + first.group(2) + text[first.end(2):second.start(2)] + "*rate"
            + text[second.end(2):])
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    recipe = load_recipe(path)
    assert "&rate" in text and "*rate" in text
    assert recipe.stages["stage2"].optim.learning_rate == float(first.group(2))


def test_a_self_referencing_alias_and_deep_nesting_are_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: &x [*x]\n")
    with pytest.raises(RecipeError, match="loop.yaml"):
        load_recipe(path)
    path = tmp_path / "deep.yaml"
    path.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(RecipeError, match="deep.yaml"):
        load_recipe(path)


def test_a_recipe_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes((config.RECIPES_DIR / "embedded.yaml").read_bytes() + b"# caf\xe9\n")
    lines = path.read_bytes().count(b"\n")
    with pytest.raises(RecipeError, match=rf"latin1.yaml: not UTF-8 at line {lines} "):
        load_recipe(path)


def test_a_large_flat_recipe_is_refused_by_its_size_or_while_it_is_read(tmp_path):
    from medmo_pipeline.safe_yaml import BYTES_PER_NODE

    text = (config.RECIPES_DIR / "embedded.yaml").read_text()
    numbers = ", ".join(["1"] * 300_000)  # no alias: 600 KB and 300,000 nodes (67 s and 2.3 GB at 3M)
    path = tmp_path / "flat.yaml"
    path.write_text(text + f"padding: [{numbers}]\n")
    with cpu_seconds_limit(3.0), pytest.raises(RecipeError, match=rf"flat.yaml.*holds more than {MAX_RECIPE_NODES} nodes"):
        load_recipe(path)
    path = tmp_path / "huge.yaml"
    path.write_text(text + "#" * (MAX_RECIPE_NODES * BYTES_PER_NODE))
    with cpu_seconds_limit(1.0), pytest.raises(RecipeError, match=r"huge.yaml.* bytes, more than"):
        load_recipe(path)


def test_a_misspelled_reward_names_the_field(tmp_path):
    message = _refused(tmp_path, lambda d: d["rl"]["rewards"].update({"bxo": {"weight": 1.0}}))
    assert "recipe.yaml" in message and "rl.rewards.bxo: unknown reward 'bxo'" in message


def test_an_unknown_reward_parameter_names_the_field(tmp_path):
    message = _refused(tmp_path, lambda d: d["rl"]["rewards"]["box"].update({"sqared": True}))
    assert "recipe.yaml" in message and "rl.rewards.box: unknown parameter(s) ['sqared']" in message


def test_every_bad_reward_is_named_at_once(tmp_path):
    def mutate(data):
        data["rl"]["rewards"]["bxo"] = {}
        data["rl"]["rewards"]["box"]["weight"] = None

    message = _refused(tmp_path, mutate)
    assert "rl.rewards.bxo:" in message and "rl.rewards.box:" in message


@pytest.mark.parametrize("value", ["../x.json", "../paper.yaml", "/etc/passwd", "shipped, absolute", "zero9.json",
                                   "../../config.py"])
def test_a_deepspeed_path_outside_recipes_deepspeed_names_the_field(tmp_path, value):
    if value == "shipped, absolute":  # even a shipped file is named by its name, never by a path
        value = str((config.RECIPES_DIR / "deepspeed" / "zero2.json").resolve())
    message = _refused(tmp_path, lambda d: d["stages"]["stage2"]["optim"].update({"deepspeed": value}))
    assert "recipe.yaml" in message
    assert "stages.stage2.optim.deepspeed" in message and "recipes/deepspeed/" in message


def test_a_shipped_deepspeed_config_loads(tmp_path):
    data = embedded_recipe_data()
    data["stages"]["stage2"]["optim"]["deepspeed"] = "zero2.json"
    assert load_recipe(write_recipe(tmp_path / "ok.yaml", data)).stages["stage2"].optim.deepspeed == "zero2.json"


def test_an_unknown_benchmark_names_the_field(tmp_path):
    message = _refused(tmp_path, lambda d: d["evaluation"].update({"benchmarks": ["synthetic_heldout", "vqa_rda"]}))
    assert "recipe.yaml" in message and "evaluation.benchmarks: ['vqa_rda'] are not benchmarks" in message


def test_an_unknown_registry_source_names_the_field(tmp_path):
    def mutate(data):
        data["corpus"]["registry"] = {"data_root": str(tmp_path), "sources": ["vqa_rad", "slaek"]}

    message = _refused(tmp_path, mutate)
    assert "recipe.yaml" in message and "corpus.registry.sources: ['slaek'] are not in the registry" in message


def test_image_limits_are_one_corpus_setting(tmp_path):
    data = embedded_recipe_data()
    data["corpus"]["image_limits"] = {"max_pixels": 1_000_000}
    recipe = load_recipe(write_recipe(tmp_path / "limits.yaml", data))
    from medmo_pipeline.data.sources import image_limits

    assert image_limits(recipe.corpus).max_pixels == 1_000_000
    message = _refused(tmp_path, lambda d: d["corpus"].update({"image_limits": {"max_pixels": 0}}))
    assert "corpus.image_limits.max_pixels" in message


@pytest.mark.parametrize(("job", "arguments"), [
    ("medmo_pipeline.training.base_model", []),
    ("medmo_pipeline.training.sft", ["--stage", "stage1", "--parent", "base", "--corpus", "corpus.json"]),
    ("medmo_pipeline.training.grpo", ["--stage", "rl", "--parent", "stage3", "--corpus", "corpus.json"]),
    ("medmo_pipeline.evaluation.run", ["--name", "rl", "--checkpoint", "rl", "--corpus", "corpus.json"]),
])
def test_jobs_run_by_hand_refuse_a_misspelled_reward_at_start(tmp_path, monkeypatch, job, arguments):
    # Without Dagster in front, the training and evaluation jobs still load the recipe whole.
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    data = embedded_recipe_data()
    data["rl"]["rewards"]["bxo"] = {}
    path = write_recipe(tmp_path / "recipe.yaml", data)
    main = importlib.import_module(job).main
    with pytest.raises(RecipeError, match=r"recipe\.yaml: invalid recipe:\n  - rl\.rewards\.bxo: unknown reward"):
        main(["--recipe", str(path), "--output", str(tmp_path / "out"), *arguments])
    assert not (tmp_path / "out").exists()


def _both(first, second):
    """Two mutations, one after the other."""
    return lambda data: (first(data), second(data))


def _set(*path_and_value):
    """A mutation setting ``data[path...] = value`` in the embedded recipe's data."""
    *path, key, value = path_and_value

    def mutate(data):
        for part in path:
            data = data[part]
        data[key] = value
    return mutate


@pytest.mark.parametrize(("mutate", "field", "problem"), [
    (_set("stages", "stage1", "optim", "learning_rate", float("inf")), "stages.stage1.optim.learning_rate",
     "finite number"),
    (_set("stages", "stage1", "mixture", "sources", {"synth_xray": 1.0, "synth_cells": float("nan")}),
     "stages.stage1.mixture.sources.synth_cells", "finite number"),
    (_set("stages", "stage1", "mixture", "sources", {}), "stages.stage1.mixture.sources", "at least 1 item"),
    (_set("evaluation", "max_new_tokens", "caption", -32), "evaluation.max_new_tokens.caption", "greater than 0"),
    (_set("corpus", "synthetic", "train_rows", "synth_xrya", 10), "corpus.synthetic.train_rows",
     "['synth_xrya'] are not synthetic sources"),
    (_set("corpus", "synthetic", "eval_rows", "synth_xray", -1), "corpus.synthetic.eval_rows.synth_xray",
     "greater than or equal to 0"),
    (_set("base_model", "tiny", "hiden_size", 64), "base_model.tiny", "unknown tiny-model spec keys: ['hiden_size']"),
    (_set("base_model", "tiny", "num_hidden_layers", True), "base_model.tiny",
     "'num_hidden_layers' must be a positive whole number, got True"),
    (_set("base_model", "tiny", "vocab_size", 10**11), "base_model.tiny", "use base_model.source: hub"),
    (_set("base_model", "tiny", "head_dim", 18), "base_model.tiny", "must sum to head_dim/2"),
    (_set("rl", "rewards", "box", "squared", "maybe"), "rl.rewards.box",
     "parameter 'squared': Input should be a valid boolean"),
    (_set("rl", "rewards", "box", "weight", float("nan")), "rl.rewards.box", "parameter 'weight': Input should be a finite"),
    (_set("rl", "rewards", "box", "normalise_by", "image"), "rl.rewards.box",
     "parameter 'normalise_by': Input should be 'ground_truth_extent' or 'image_size'"),
    (_set("stages", "stage1", "mixture", "tasks", []), "stages.stage1.mixture.tasks", "at least 1 item"),
    (_set("stages", "stage1", "mixture", "tasks", ["vqa", "vqa"]), "stages.stage1.mixture",
     "tasks lists a task twice"),
    (_set("rl", "rewards", {}), "rl.rewards", "at least 1 item"),
    (_set("rl", "rewards", {"box": {"weight": 0}, "label_accuracy": {"weight": 0}}), "rl.rewards",
     "every reward weighs 0"),
    (_set("evaluation", "benchmarks", []), "evaluation.benchmarks", "at least 1 item"),
    (_set("stages", "stage1", "optim", "max_steps", True), "stages.stage1.optim.max_steps",  # YAML's "yes": 1 step
     "True is a yes or no, not a number"),
], ids=["lr-inf", "weight-nan", "no-sources", "max-new-tokens", "synthetic-source", "synthetic-rows",
        "tiny-typo", "tiny-bool", "tiny-size", "tiny-architecture", "reward-bool", "reward-weight", "reward-word",
        "no-tasks", "task-twice", "no-rewards", "rewards-all-zero", "no-benchmarks", "yes-for-steps"])
def test_values_the_stages_would_fail_on_are_refused_at_load_naming_the_field(tmp_path, mutate, field, problem):
    """What a stage would only find when it starts (or never: a NaN weight, a misspelled tiny-model
    key) is refused when the recipe loads, naming the field."""
    message = _refused(tmp_path, mutate)
    assert "recipe.yaml" in message and f"{field}:" in message and problem in message, message


def test_an_integer_past_pythons_digit_limit_names_the_file(tmp_path):
    text = (config.RECIPES_DIR / "embedded.yaml").read_text().replace("seed: 42", "seed: " + "9" * 5000, 1)
    path = tmp_path / "digits.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=r"digits.yaml: a value cannot be read \(Exceeds the limit \(4300 digits\)"):
        load_recipe(path)


def test_a_key_stated_twice_is_refused_naming_both_lines(tmp_path):
    """YAML forbids it; PyYAML would keep the second, silently."""
    text = (config.RECIPES_DIR / "embedded.yaml").read_text()
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.strip().startswith("learning_rate:"))
    rows = text.splitlines()
    rows.insert(line, rows[line - 1].split(":")[0] + ": 9.0")
    path = tmp_path / "twice.yaml"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(RecipeError, match=rf"twice.yaml: line {line + 1} states 'learning_rate' again "
                                          rf"\(first at line {line}\)"):
        load_recipe(path)
    path.write_text(text.replace("image: {max_pixels: 9216}", "image: {max_pixels: 9216, max_pixels: 64}", 1))
    with pytest.raises(RecipeError, match=r"twice.yaml: line \d+ states 'max_pixels' again"):  # both on one line
        load_recipe(path)


def test_a_guard_protecting_a_metric_no_evaluation_computes_stops_the_definitions(tmp_path):
    """A misspelled protected metric would guard nothing (neither table holds it, so it never drops)."""
    from assets.definitions import build_definitions

    data = embedded_recipe_data()
    data["stages"]["stage2"]["guard"]["protected"] = ["closed_vqa_acc", "caption_rouge_l"]
    path = write_recipe(tmp_path / "guard.yaml", data)
    with pytest.raises(RecipeError, match=r"stages.stage2.guard.protected: \['closed_vqa_acc'\] are not metrics"):
        build_definitions(load_recipe(path), path)


def _rename_stage(old: str, new: str):
    def mutate(data):
        stages = data["stages"]
        data["stages"] = {new if name == old else name: stage for name, stage in stages.items()}
        for stage in data["stages"].values():
            if stage.get("parent") == old:
                stage["parent"] = new
        if data["rl"].get("parent") == old:
            data["rl"]["parent"] = new
    return mutate


@pytest.mark.parametrize(("mutate", "field", "problem"), [
    (_rename_stage("stage1", "../../../../tmp/evil"), "stages", "is not a word of letters"),
    (_rename_stage("stage1", "corpus"), "stages", "'corpus' is reserved"),
    (_rename_stage("stage1", "rl"), "stages", "'rl' is reserved"),
    (_set("tracking", "experiment", "../../../../tmp/pwn"), "tracking.experiment", "should match pattern"),
    (_set("seed", -1), "seed", "greater than or equal to 0"),
    (_set("stages", "stage1", "purpose", "x" * 7000), "stages.stage1.purpose", "at most 2000 characters"),
    (_set("stages", "stage1", "optim", "max_steps", 0), "stages.stage1.optim.max_steps", "0 steps"),
    (_set("stages", "stage1", "optim", "adam_beta1", 1.5), "stages.stage1.optim.adam_beta1", "less than 1"),
    (_set("stages", "stage1", "optim", "learning_rate", 50), "stages.stage1.optim.learning_rate",
     "less than or equal to 1"),
    (_set("stages", "stage1", "image", {"max_pixels": 9216, "min_pixels": 20000}), "stages.stage1.image",
     "min_pixels (20000) is above max_pixels (9216)"),
    (_set("rl", "grpo", "epsilon_high", 0.1), "rl.grpo", "epsilon_high (0.1) is below epsilon"),
    (_set("rl", "rewards", "box", "weight", -1.0), "rl.rewards.box", "weight -1.0 is negative"),
    (_set("rl", "rewards", "soft_overlong", "max_completion_len", 4096), "rl.rewards.soft_overlong.max_completion_len",
     "is not rl.grpo.max_completion_length"),
    (_both(_set("rl", "mixture", "tasks", ["caption"]), _set("rl", "mixture", "task_weights", {})), "rl.mixture.tasks",
     "no weighted reward scores the answer"),
    (_set("base_model", "tiny", "num_attention_heads", 3), "base_model.tiny", "not a multiple of num_key_value_heads"),
    (_set("stages", "stage1", "optim", "trainer_args", {"max_grad_norm": "abc"}),
     "stages.stage1.optim.trainer_args.max_grad_norm", "valid number"),
    (_set("stages", "stage1", "optim", "trainer_args", {"hub_token": "hf_" + "a" * 34}),
     "stages.stage1.optim.trainer_args.hub_token", "looks like a secret"),
    (_set("description", "key sk-" + "b" * 40), "description", "looks like a secret"),
    (_set("evaluation", "benchmarks", ["synthetic_heldout", "synthetic_heldout"]), "evaluation.benchmarks",
     "listed more than once"),
    # YAML's yes / on where a number is a value of a mapping, a reward's parameter or a trainer argument
    (_set("stages", "stage1", "mixture", "sources", {"synth_xray": True, "synth_cells": 2}),
     "stages.stage1.mixture.sources.synth_xray", "True is a yes or no"),
    (_set("rl", "rewards", "box", "weight", True), "rl.rewards.box", "True is a yes or no"),
    (_set("stages", "stage1", "optim", "trainer_args", {"max_grad_norm": True}),
     "stages.stage1.optim.trainer_args.max_grad_norm", "True is a yes or no"),
    # task weights are whole repeats of tasks the mixture trains; source weights shares that add up
    (_set("stages", "stage2", "mixture", "task_weights", {"grounding": 2.5}), "stages.stage2.mixture",
     "a whole number from 1 to 100"),
    (_set("stages", "stage2", "mixture", "task_weights", {"grounding": 1e308}), "stages.stage2.mixture",
     "a whole number from 1 to 100"),
    (_set("stages", "stage2", "mixture", "task_weights", {"text_qa": 2}), "stages.stage2.mixture",
     "weight tasks the mixture does not train"),
    (_set("stages", "stage1", "mixture", "sources", {"synth_xray": 1e308, "synth_cells": 1e308}),
     "stages.stage1.mixture", "at most 1e+09"),
    (_set("stages", "stage1", "mixture", "open", {"tasks": "x" * 6000 + " key sk-" + "b" * 40}),
     "stages.stage1.mixture.open.tasks", "looks like a secret"),
], ids=["stage-path", "stage-corpus", "stage-rl", "experiment-path", "seed", "long-purpose", "zero-steps", "beta",
        "lr-50", "pixels", "clip-higher", "negative-weight", "overlong-length", "unscored-task", "heads",
        "trainer-arg-value", "trainer-arg-secret", "secret-text", "benchmark-twice", "yes-source-weight",
        "yes-reward-weight", "yes-trainer-arg", "fractional-task-weight", "huge-task-weight", "unused-task-weight",
        "infinite-weight-sum", "secret-past-6000"])
def test_names_ranges_combinations_and_secrets_are_refused_at_load_naming_the_field(tmp_path, mutate, field, problem):
    """Each of these loaded: stage names and the experiment became paths out of MEDMO_HOME or shadowed
    the run's other parts, values outside any sense reached the trainer, a negative weight trained
    the policy away from its reward, a secret written in the recipe was logged with it."""
    message = _refused(tmp_path, mutate)
    assert "recipe.yaml" in message and f"{field}:" in message and problem in message, message


def test_a_set_a_pasted_secret_and_a_data_root_expanding_one_are_refused_without_echoing_it(tmp_path):
    """A !!set loads in an order that changes with each process's hash seed, and so did every hash
    of the recipe; a token pasted where a name belongs was quoted in the error, which is printed and
    logged; $HF_TOKEN (not only ${HF_TOKEN}) in data_root expanded it into a logged path."""
    text = (config.RECIPES_DIR / "embedded.yaml").read_text()
    path = tmp_path / "recipe.yaml"
    path.write_text(text.replace("tasks: [caption, vqa]", "tasks: !!set {caption, vqa}", 1))
    assert "!!set {caption" in path.read_text()
    with pytest.raises(RecipeError, match=r"is a !!set, whose order is not kept"):
        load_recipe(path)
    token = "hf_" + "c" * 34
    message = _refused(tmp_path, _set("evaluation", "benchmarks", [token]))
    assert "evaluation.benchmarks:" in message and token not in message and "<secret>" in message
    registry = {"data_root": "/data/$HF_TOKEN", "sources": ["vqa_rad"]}
    message = _refused(tmp_path, _set("corpus", "registry", registry))
    assert "corpus.registry.data_root: expands HF_TOKEN, a secret" in message
    registry["data_root"] = "/data/${MEDMO_DATA:-/srv}"
    message = _refused(tmp_path, _set("corpus", "registry", registry))
    assert "'${MEDMO_DATA:-/srv}' is not expanded" in message

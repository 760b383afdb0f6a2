"""The offline tiny Qwen3-VL: build, reload, tokenise, process images, generate, and train with TRL."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image, ImageDraw

from medmo_pipeline.model import (
    UnsafeCheckpointError,
    build_tiny_base_model,
    count_parameters,
    load_model,
    load_processor,
    set_image_resolution,
)
from medmo_pipeline.model.tokenizer import IMAGE_PAD

QUESTION = "Locate the lesion."


def corpus_texts() -> list[str]:
    rng = random.Random(0)
    texts = []
    for _ in range(200):
        box = [rng.randint(0, 1000) for _ in range(4)]
        texts.append(f"lesion <box>[[{box[0]}, {box[1]}, {box[2]}, {box[3]}]]</box>")
        texts.append("Is there a lesion in this chest x-ray? yes no. The lungs are clear.")
    return texts


def lesion_image(rng: random.Random, side: int = 128) -> tuple[Image.Image, str]:
    img = Image.new("RGB", (side, side), (25, 25, 25))
    x, y = rng.randint(4, side - 40), rng.randint(4, side - 40)
    ImageDraw.Draw(img).ellipse([x, y, x + 30, y + 24], fill=(235, 235, 235))
    box = [round(v * 1000 / side) for v in (x, y, x + 30, y + 24)]
    return img, f"lesion <box>[[{box[0]}, {box[1]}, {box[2]}, {box[3]}]]</box>"


def image_prompt(question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_base_model(
        tmp_path_factory.mktemp("tiny") / "base", texts=corpus_texts(), spec={}, seed=42
    )


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return load_processor(tiny_dir)


def test_saved_directory_is_a_safetensors_hf_checkpoint(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "processor_config.json",
        "chat_template.jinja",
    } <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)


def test_reload_gives_identical_parameters_and_tokenizer(tiny_dir, tmp_path):
    from medmo_pipeline.model.processor import ImageOnlyQwen3VLProcessor

    model = load_model(tiny_dir)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert 400_000 <= count_parameters(model) <= 600_000

    rebuilt = load_model(build_tiny_base_model(tmp_path / "again", texts=corpus_texts(), spec={}, seed=42))
    original, again = model.state_dict(), rebuilt.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)

    first, second = load_processor(tiny_dir), load_processor(tmp_path / "again")
    assert isinstance(first, ImageOnlyQwen3VLProcessor)
    sample = "lesion <box>[[12, 345, 678, 900]]</box> <|im_start|>user\n"
    assert first.tokenizer(sample)["input_ids"] == second.tokenizer(sample)["input_ids"]
    assert first.tokenizer.get_vocab() == second.tokenizer.get_vocab()


def test_different_seed_gives_different_weights(tiny_dir, tmp_path):
    other = load_model(build_tiny_base_model(tmp_path / "s7", texts=corpus_texts(), seed=7))
    base = load_model(tiny_dir)
    key = "model.language_model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(base.state_dict()[key], other.state_dict()[key])


def test_unknown_spec_key_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny-model spec keys"):
        build_tiny_base_model(tmp_path / "bad", texts=corpus_texts(), spec={"hidden": 32})


def test_digits_tokenise_one_per_digit(processor):
    tokens = processor.tokenizer.tokenize("[[120, 4567]]")
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digit_tokens == list("1204567")


def test_chat_template_renders_images_strings_and_generation_prompt(processor):
    tok = processor.tokenizer
    text = tok.apply_chat_template(image_prompt("Where?"), tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Where?<|im_end|>\n<|im_start|>assistant\n"
    )
    plain = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(plain, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    )


def test_assistant_mask_covers_answer_and_end_of_turn(processor):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    messages = [*image_prompt(), {"role": "assistant", "content": [{"type": "text", "text": "no"}]}]
    out = processor.tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert processor.tokenizer.decode(masked) == "no<|im_end|>\n"
    assert is_chat_template_stop_token_trained(processor)


@pytest.mark.parametrize(
    ("side", "max_pixels", "grid"),
    [(128, 128 * 128, 8), (96, 128 * 128, 6), (128, 64 * 64, 4), (96, 64 * 64, 4)],
)
def test_image_pad_count_matches_merged_patches(tiny_dir, side, max_pixels, grid):
    processor = load_processor(tiny_dir)
    set_image_resolution(processor, max_pixels=max_pixels, min_pixels=32 * 32)
    text = processor.apply_chat_template(image_prompt(), tokenize=False, add_generation_prompt=True)
    enc = processor(images=[Image.new("RGB", (side, side))], text=[text], return_tensors="pt")
    assert enc["image_grid_thw"].tolist() == [[1, grid, grid]]
    merged = grid * grid // processor.image_processor.merge_size**2
    assert int((enc["input_ids"] == processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)).sum()) == merged


def test_load_processor_sets_resolution(tiny_dir):
    processor = load_processor(tiny_dir, max_pixels=64 * 64, min_pixels=32 * 32)
    enc = processor.image_processor(images=[Image.new("RGB", (128, 128))])
    assert enc["image_grid_thw"].tolist() == [[1, 4, 4]]
    with pytest.raises(ValueError):
        set_image_resolution(processor, max_pixels=16 * 16)


def test_forward_and_greedy_generate(tiny_dir, processor):
    model = load_model(tiny_dir).eval()
    text = processor.apply_chat_template(image_prompt(), tokenize=False, add_generation_prompt=True)
    enc = processor(images=[Image.new("RGB", (128, 128), (40, 40, 40))], text=[text], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert logits.shape == (1, enc["input_ids"].shape[1], model.config.text_config.vocab_size)
    new = out[0, enc["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 6
    assert isinstance(processor.batch_decode(new[None], skip_special_tokens=True)[0], str)


def test_pickle_only_directory_is_refused(tiny_dir, tmp_path):
    model = load_model(tiny_dir)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_dir / "config.json").read_text())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        load_model(pickled)
    reloaded = load_model(pickled, allow_pickle=True)
    key = "lm_head.weight"
    assert torch.equal(reloaded.state_dict()[key], model.state_dict()[key])


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "processor_config.json"])
def test_a_damaged_json_file_of_a_checkpoint_is_named_by_both_loaders(tiny_dir, tmp_path, name):
    """transformers' own JSON error names no file; a checkpoint with a damaged file is refused
    naming it, whichever of the model and the processor is loaded first."""
    from medmo_pipeline.model.loading import CorruptCheckpointError

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_dir, damaged)
    (damaged / name).write_text('{"model_type": "qwen3_vl", ')  # cut short
    for load in (load_model, load_processor):
        with pytest.raises(CorruptCheckpointError, match=rf"damaged/{re.escape(name)}: not a JSON file"):
            load(damaged)


def test_a_weight_index_naming_files_outside_the_checkpoint_is_refused_naming_the_index(tiny_dir, tmp_path):
    from medmo_pipeline.model.loading import CorruptCheckpointError

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_dir, checkpoint)
    (tmp_path / "outside").mkdir()
    shutil.move(checkpoint / "model.safetensors", tmp_path / "outside" / "w.safetensors")
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "../outside/w.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CorruptCheckpointError, match=r"model.safetensors.index.json: weight_map names "
                                                     r"'../outside/w.safetensors', outside the checkpoint"):
        load_model(checkpoint)
    index["weight_map"] = {"lm_head.weight": "missing.safetensors"}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CorruptCheckpointError, match="'missing.safetensors', not a file beside the index"):
        load_model(checkpoint)


@pytest.mark.parametrize(("content", "says"), [('{"stage": ', "not a JSON file"), ("[1, 2]", "a JSON list")])
def test_a_damaged_lineage_file_of_a_parent_is_named(tmp_path, content, says):
    """Read when a stage starts from the parent and when an evaluation is recorded."""
    from medmo_pipeline.model.checkpoint import parent_reference
    from medmo_pipeline.model.loading import CorruptCheckpointError

    (tmp_path / "lineage.json").write_text(content)
    with pytest.raises(CorruptCheckpointError, match=f"lineage.json: {says}"):
        parent_reference(str(tmp_path))


def test_hub_id_goes_through_auto_classes_offline(monkeypatch):
    from medmo_pipeline.model.loading import _hub_kwargs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kwargs = _hub_kwargs("Qwen/Qwen3-VL-8B-Instruct", "main", False)
    assert kwargs == {"trust_remote_code": False, "revision": "main", "local_files_only": True}
    with pytest.raises(OSError):
        load_model("medmo-tests/no-such-model")


def test_sft_trainer_learns_with_assistant_only_loss(tiny_dir, processor, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rng = random.Random(1)
    rows = []
    for _ in range(16):
        img, answer = lesion_image(rng)
        # Arrow needs one content type per column: with list-of-parts user turns, the assistant turn
        # is a list of parts too (a plain string there fails in Dataset.from_list).
        reply = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
        rows.append({"images": [img], "messages": [*image_prompt(), reply]})
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        use_cpu=True,
        bf16=False,
        max_length=None,
        assistant_only_loss=True,
        per_device_train_batch_size=4,
        max_steps=30,
        learning_rate=2e-3,
        lr_scheduler_type="constant",
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    trainer = SFTTrainer(
        model=load_model(tiny_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_grpo_trainer_runs_on_image_column_and_conversational_prompt(tiny_dir, processor, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rng = random.Random(2)
    rows = []
    for _ in range(8):
        img, answer = lesion_image(rng)
        rows.append({"image": img, "prompt": image_prompt(), "answer": answer})
    seen: dict = {}

    def length_reward(prompts, completions, answer, **kwargs):
        seen["answer"], seen["completion"] = answer, completions[0]
        return [float(len(c[0]["content"]) % 3) for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=load_model(tiny_dir),
        reward_funcs=[length_reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    assert seen["answer"][0].startswith("lesion <box>")
    assert seen["completion"][0]["role"] == "assistant"


def test_patchwise_projection_leaves_the_model_output_unchanged(tiny_dir, processor):
    from medmo_pipeline.model.patch_projection import use_patchwise_projection

    text = processor.apply_chat_template(image_prompt(), tokenize=False, add_generation_prompt=True)
    image, _ = lesion_image(random.Random(3))
    enc = processor(images=[image], text=[text], return_tensors="pt")
    model = load_model(tiny_dir).eval()
    with torch.no_grad():
        before = model(**enc).logits
        assert use_patchwise_projection(model) == 1  # the vision tower's patch embedding
        after = model(**enc).logits
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-4)

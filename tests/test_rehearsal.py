"""The scale rehearsal: its corpus layout, model shape and recipe, and ZeRO-3 partitioning at load
across two real processes (torchrun, gloo, DeepSpeed on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medmo_pipeline.config import RECIPES_DIR


def test_corpus_is_laid_out_like_the_registry_in_the_paper_proportions(tmp_path):
    from medmo_pipeline.data import shards
    from medmo_pipeline.data.registry import load_registry
    from medmo_pipeline.rehearsal.corpus import build_corpus
    from medmo_pipeline.schema.rows import validate_row

    index = build_corpus(tmp_path, total_rows=9000, shard_rows=500, log=lambda _: None)
    entries = {entry.name: entry for entry in load_registry().trained()}
    assert set(index["sources"]) == set(entries) and len(entries) == 45
    rows = {name: info["rows"] for name, info in index["sources"].items()}
    assert 8900 <= sum(rows.values()) <= 9000
    assert rows["medtrinity"] == 9000 * 18_500_000 // 25_800_000  # stage 1's share of the paper's pairs
    for name, info in index["sources"].items():
        path = Path(info["path"])
        assert shards.verify_shards(path) == [], name
        seen = list(shards.iter_rows(path))
        assert len(seen) == info["rows"]
        assert {row["task"] for row in seen} == set(entries[name].tasks), name
        for row in seen[:3]:
            validate_row(row)
            assert bool(row["images"]) == (row["task"] not in ("text_qa", "instruction"))
    # Written again with the same size, the corpus is reused as it is.
    assert build_corpus(tmp_path, total_rows=9000, shard_rows=500, log=lambda _: None)["data_version"] \
        == index["data_version"]


def test_rehearsal_model_keeps_the_8b_layer_structure():
    from transformers import Qwen3VLForConditionalGeneration

    from medmo_pipeline.model.shapes import full_spec, scaled_down
    from medmo_pipeline.model.tiny import build_config, resolve_spec

    full, small = full_spec("8b"), resolve_spec(scaled_down("8b"))
    for key in ("num_hidden_layers", "vision_depth", "deepstack_visual_indexes", "patch_size", "spatial_merge_size"):
        assert small[key] == full[key], key
    assert (small["num_attention_heads"] // small["num_key_value_heads"]
            == full["num_attention_heads"] // full["num_key_value_heads"])
    ids = dict.fromkeys(["image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id",
                         "bos_token_id", "eos_token_id", "pad_token_id"], 1)
    import torch

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = Qwen3VLForConditionalGeneration(build_config(small, ids))
    assert len(model.model.language_model.layers) == 36 and len(model.model.visual.blocks) == 27
    assert sum(p.numel() for p in model.parameters()) < 5_000_000  # runs on a CPU


def test_rehearsal_recipe_keeps_the_paper_stages_and_mixtures(tmp_path):
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.model.shapes import scaled_down
    from medmo_pipeline.rehearsal.recipe import rehearsal_recipe

    path = tmp_path / "rehearsal.yaml"
    path.write_text(yaml.safe_dump(rehearsal_recipe(spec=scaled_down("8b"), data_root=tmp_path, steps=2,
                                                    image_side=32)))
    rehearsal, paper = load_recipe(path), yaml.safe_load((RECIPES_DIR / "paper.yaml").read_text())
    assert rehearsal.checkpoints() == ["base_model", *paper["stages"], "rl"]
    for name in [*paper["stages"], "rl"]:
        section = paper["rl"] if name == "rl" else paper["stages"][name]
        stage = rehearsal.stage(name)
        assert stage.mixture.model_dump(exclude_defaults=True) == section["mixture"], name
        assert stage.optim.deepspeed == "zero3.json" and stage.optim.max_steps == 2
        assert stage.optim.gradient_checkpointing == section["optim"]["gradient_checkpointing"]
        assert stage.parent == section["parent"]


@pytest.mark.slow
def test_each_rank_holds_half_the_model_under_zero3(tmp_path):
    """Stage 1 of the rehearsal, two processes: right after loading, each rank holds about half of the
    model's parameters (ZeRO-3 partitions at load), and the stage trains and publishes."""
    from medmo_pipeline.rehearsal.run import rehearse

    report = rehearse(tmp_path, rows=4000, steps=1, stages=["stage1"], nproc=2, log=lambda _: None)

    (stage,) = report["stages"]
    assert [r["rank"] for r in stage["ranks"]] == [0, 1]
    total = stage["ranks"][0]["parameters_total"]
    assert total > 3_000_000
    for rank in stage["ranks"]:
        assert rank["parameters_total"] == total and rank["world_size"] == 2
        assert 0.45 <= rank["parameters_held"] / total <= 0.55, rank
        assert rank["peak_rss_mb"] > 0
    assert sum(r["parameters_held"] for r in stage["ranks"]) >= total  # every element is held somewhere
    assert stage["time_to_first_step_s"] is not None
    assert stage["data_path"]["rows"] > 0
    lineage = json.loads((Path(stage["checkpoint"]) / "lineage.json").read_text())
    assert lineage["metrics"]["steps"] == 1 and lineage["resume"]["inputs"]["world_size"] == 2
    assert json.loads((tmp_path / "rehearsal.json").read_text())["stages"][0]["stage"] == "stage1"


def test_a_text_only_batch_runs_the_modules_of_an_image_batch_in_the_same_order(tmp_path):
    """What ZeRO-3 needs from a rank whose micro-batch has no image (model.zero3_vision): once patched,
    a text-only batch runs the same modules as an image batch in the same order, forward and backward
    (ZeRO-3 gathers weights in that order on every rank); its loss is unchanged and the vision weights
    get zero gradients."""
    import torch
    from PIL import Image

    from medmo_pipeline.model.loading import load_model, load_processor
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.model.zero3_vision import run_vision_tower_on_every_rank

    base = build_tiny_base_model(tmp_path / "base", texts=["which option is correct"] * 50, spec={}, seed=1)
    model, processor = load_model(base), load_processor(base)
    order: list[tuple[str, str]] = []

    def run(messages, images=None):
        text = processor.apply_chat_template(messages, tokenize=False)
        batch = processor(text=[text], images=images, return_tensors="pt")
        batch["labels"] = batch["input_ids"].clone()
        order.clear()
        model.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), list(order)

    text_only = [{"role": "user", "content": "Which option?"}, {"role": "assistant", "content": "B"}]
    with_image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]},
                  {"role": "assistant", "content": "A grey image."}]
    plain = run(text_only)[0]
    assert all(p.grad is None for p in model.model.visual.parameters())  # unpatched, the tower does not run

    assert run_vision_tower_on_every_rank(model)
    # Hooks registered after the patch, as DeepSpeed registers its own when the trainer starts.
    for name, module in model.named_modules():
        if name and name.count(".") <= 3:
            module.register_forward_pre_hook(lambda m, i, name=name: order.append(("forward", name)))
            module.register_full_backward_pre_hook(lambda m, g, name=name: order.append(("backward", name)))
    image_order = run(with_image, [Image.new("RGB", (64, 64), (80, 80, 80))])[1]
    patched, patched_order = run(text_only)
    assert any(name.startswith("model.visual") for _, name in image_order)
    assert patched_order == image_order
    assert torch.equal(patched, plain)
    assert all(p.grad is not None and not p.grad.any() for p in model.model.visual.parameters())

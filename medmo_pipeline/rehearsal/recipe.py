"""The rehearsal's recipe: ``recipes/paper.yaml`` with only what must shrink to run on a CPU changed.

Kept from the paper recipe: the stages and their order, each stage's mixture (sources, tasks,
weights, ``max_samples``), DeepSpeed ZeRO-3, gradient checkpointing, the RL loss and rewards.
Changed: the base model (the rehearsal builds it), the corpus (the synthetic one), a few steps per
stage with a micro-batch of one, tiny images, short GRPO completions, no intermediate saves.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from medmo_pipeline.config import RECIPES_DIR


def rehearsal_recipe(*, spec: dict, data_root: Path, steps: int, image_side: int, paper: Path | None = None) -> dict:
    data = yaml.safe_load(Path(paper or RECIPES_DIR / "paper.yaml").read_text())
    data = copy.deepcopy(data)
    data["name"] = "rehearsal"
    data["description"] = "the paper recipe's structure on a CPU-sized model and a synthetic corpus"
    data["base_model"] = {"source": "tiny", "tiny": spec}
    data["corpus"] = {"kind": "registry", "registry": {"data_root": str(data_root), "sources": None}}
    pixels = image_side * image_side
    for section in [*data["stages"].values(), data["rl"]]:
        section["optim"].update(max_steps=steps, per_device_train_batch_size=1, gradient_accumulation_steps=1,
                                logging_steps=1, save_steps=None, on_mismatch="fresh", deepspeed="zero3.json")
        section["image"] = {"max_pixels": pixels, "min_pixels": pixels}
        section.pop("max_length", None)
        section.pop("guard", None)  # no evaluation runs in the rehearsal
    grpo = data["rl"]["grpo"]
    grpo.update(num_generations=2, max_completion_length=8, max_prompt_length=None)
    for reward in data["rl"]["rewards"].values():
        if "max_completion_len" in reward:
            reward.update(max_completion_len=8, soft_punish_cache=2)
    data["rl"]["completion_log_every"] = 1000
    data["evaluation"] = {"benchmarks": ["synthetic_heldout"]}
    data["tracking"] = {"experiment": "medmo-rehearsal"}
    return data

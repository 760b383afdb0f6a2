"""Shared fixtures: an isolated MEDMO_HOME per test, and a small recipe derived from the embedded one."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from medmo_pipeline.config import RECIPES_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def medmo_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "medmo-home"
    monkeypatch.setenv("MEDMO_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MEDMO_RECIPE", raising=False)
    return home


def embedded_recipe_data() -> dict:
    return yaml.safe_load((RECIPES_DIR / "embedded.yaml").read_text())


def small_recipe_data() -> dict:
    """The embedded recipe scaled down so the whole graph runs in about a minute or two."""
    data = copy.deepcopy(embedded_recipe_data())
    data["name"] = "embedded-small"
    data["base_model"]["tokenizer_training_rows"] = 200
    synthetic = data["corpus"]["synthetic"]
    synthetic["image_size"] = 64
    synthetic["train_rows"] = {"synth_xray": 240, "synth_cells": 120, "synth_medqa": 80}
    synthetic["eval_rows"] = {"synth_xray": 30, "synth_cells": 14, "synth_medqa": 16}
    data["corpus"]["shard_rows"] = 100
    for stage in [*data["stages"].values(), data["rl"]]:
        stage["guard"] = {"protected": []}  # a few steps learn nothing to guard
    for stage in data["stages"].values():
        stage["optim"]["max_steps"] = 6
        stage["optim"]["per_device_train_batch_size"] = 4
        stage["optim"]["logging_steps"] = 2
        stage["image"] = {"max_pixels": 4096}
    data["rl"]["optim"]["max_steps"] = 2
    data["rl"]["optim"]["per_device_train_batch_size"] = 4
    data["rl"]["optim"]["logging_steps"] = 1
    data["rl"]["grpo"]["num_generations"] = 2
    data["rl"]["grpo"]["max_completion_length"] = 12
    data["rl"]["rewards"]["soft_overlong"]["max_completion_len"] = 12
    data["rl"]["rewards"]["soft_overlong"]["soft_punish_cache"] = 4
    data["rl"]["mixture"]["max_samples"] = 40
    data["rl"]["image"] = {"max_pixels": 4096}
    data["evaluation"]["max_samples_per_task"] = 6
    data["evaluation"]["batch_size"] = 16
    data["evaluation"]["bootstrap_resamples"] = 100
    return data


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def small_recipe(tmp_path) -> Path:
    return write_recipe(tmp_path / "small.yaml", small_recipe_data())

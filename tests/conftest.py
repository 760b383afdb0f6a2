"""Shared fixtures: an isolated MEDMO_HOME per test, and a small recipe derived from the embedded one."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
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


def launched_job_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) as the local launcher hands it to a job of the
    offline recipe with MEDMO_HOME ``home``: the import-time variables match those of ``warm_job_host``."""
    from medmo_pipeline.launch.local import job_env

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        return job_env(dict(os.environ if base is None else base), run_id="", asset_key="", offline=True)


@pytest.fixture(scope="session")
def warm_job_host(tmp_path_factory) -> Iterator[str]:
    """The socket of one warm job host (``medmo_pipeline.launch.warm_host``) for the whole session, as
    ``medmo demo`` starts one: a job launched with ``MEDMO_WARM_HOST`` set to it starts as a fork that has
    torch, transformers, trl and MLflow imported already, instead of importing them itself. Tests that
    launch many jobs only to get their outputs use it; a job whose import-time environment differs from
    the host's, or that starts before the host listens, runs cold by itself with the same result.
    Tests that are about how a job starts, or that signal a job's own process, leave it out."""
    from medmo_pipeline.launch.warm_host import PRELOAD, SOCKET_ENV, WarmHost, preload_modules

    # Imported here first: torch sets an import-time variable (TORCHINDUCTOR_CACHE_DIR) in the environment
    # of the process that imports it, and jobs started from this process after that would differ from a
    # host started before it, so they would all run cold.
    preload_modules(PRELOAD)
    tmp = tmp_path_factory.mktemp("warm-host")
    host = WarmHost(env=launched_job_env(tmp / "home"), log_path=tmp / "warm-host.log")
    with host as update:
        try:  # a job started meanwhile would import torch & co. beside the host, on the same cores
            host.wait_until_listening()
        except RuntimeError as error:  # jobs run cold, as they would without a host
            print(f"warm job host: {error}; see {tmp / 'warm-host.log'}")
        yield update[SOCKET_ENV]



@pytest.fixture(scope="session")
def stage_inputs(tmp_path_factory, warm_job_host):
    """What stage1 needs (``tests.stage_inputs.materialize_inputs``), materialized once for the session;
    modules take a copy of it (``copy_inputs``), never this instance itself."""
    from tests.stage_inputs import materialize_inputs

    root = tmp_path_factory.mktemp("stage-inputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(root / "home"))
        for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE", "MEDMO_PROFILE"):
            mp.delenv(name, raising=False)
        return materialize_inputs(root, warm_job_host)


def tiny_processor(tmp_path_factory):
    """The processor of a tiny model built offline on the synthetic corpus's texts, at 64 x 64 images
    (for a module-scoped fixture: each module builds its own)."""
    from medmo_pipeline.data import synthetic
    from medmo_pipeline.model.loading import load_processor, set_image_resolution
    from medmo_pipeline.model.tiny import build_tiny_base_model

    texts = synthetic.iter_texts(r for s in synthetic.SYNTHETIC_SOURCES for r in synthetic.generate_rows(s, "train", 40))
    directory = build_tiny_base_model(tmp_path_factory.mktemp("tiny") / "base", texts=texts, spec={}, seed=1)
    processor = load_processor(directory)
    set_image_resolution(processor, 64 * 64)
    return processor

"""What one SFT stage needs, materialized once into a real Dagster instance: the corpus partitions its
mixture draws from, the mixture, and the base model (the small recipe, shrunk further). The session
does that once (``stage_inputs`` in conftest.py); each test module gets a copy of that Dagster instance
(``copy_inputs``) with a MEDMO_HOME of its own, so that what one module's stage runs leave behind is
invisible to the next.

Tests then build definitions from a recipe that differs only in ``stages.stage1`` (steps, save
interval, DeepSpeed, ...) and materialize ``stage1_checkpoint`` alone through the launcher under test:
the inputs' recipe sections are unchanged, so the stage reads the same parent and mixture.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import small_recipe_data, write_recipe

STAGE = "stage1"
STAGE_KEY = "stage1_checkpoint"


def inputs_recipe_data() -> dict:
    data = small_recipe_data()
    data["corpus"]["synthetic"]["train_rows"] = {"synth_xray": 48, "synth_cells": 32, "synth_medqa": 16}
    data["corpus"]["synthetic"]["eval_rows"] = {"synth_xray": 8, "synth_cells": 8, "synth_medqa": 8}
    data["corpus"]["shard_rows"] = 64
    return data


def stage_recipe(tmp_path: Path, name: str = "stage.yaml", **optim) -> Path:
    """The inputs' recipe with ``stages.stage1.optim`` updated by ``optim``."""
    data = copy.deepcopy(inputs_recipe_data())
    data["stages"][STAGE]["optim"].update(optim)
    return write_recipe(tmp_path / name, data)


@dataclass
class StageInputs:
    home: Path
    dagster_dir: Path


def materialize_inputs(root: Path, warm_host: str | None = None) -> StageInputs:
    """Curate stage1's sources, draw its mixture and build the base model, with the local launcher (its
    jobs started as forks of ``warm_host``, the session's warm job host, when given)."""
    import dagster as dg
    import pytest

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.launch.warm_host import SOCKET_ENV

    home, dagster_dir = root / "home", root / "dagster"
    dagster_dir.mkdir(parents=True)
    recipe_path = write_recipe(root / "inputs.yaml", inputs_recipe_data())
    recipe = load_recipe(recipe_path)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(dagster_dir)) as instance:
        if warm_host:
            mp.setenv(SOCKET_ENV, warm_host)
        defs = build_definitions(recipe, recipe_path)
        for source in sorted(recipe.stages[STAGE].mixture.sources):
            result = dg.materialize(list(defs.assets), selection=[dg.AssetKey("corpus_shards")],
                                    partition_key=source, resources=defs.resources, instance=instance)
            assert result.success
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey(f"{STAGE}_mixture"),
                                                              dg.AssetKey("base_model")],
                                resources=defs.resources, instance=instance)
        assert result.success
    return StageInputs(home=home, dagster_dir=dagster_dir)


def copy_inputs(inputs: StageInputs, root: Path) -> StageInputs:
    """A copy of ``inputs``' Dagster instance under ``root``, with an empty MEDMO_HOME there (``root/home``).
    The copied materializations point at the upstream outputs in ``inputs.home``, which jobs only read."""
    dagster_dir = root / "dagster"
    shutil.copytree(inputs.dagster_dir, dagster_dir)
    return StageInputs(home=root / "home", dagster_dir=dagster_dir)


def run_messages(instance, run_id: str) -> list[str]:
    """What a person reads in the run's log: each entry's message, and the error an event carries
    (a job's exception arrives as an engine event: "[pipes] external process pipes closed with exception")."""
    messages = []
    for entry in instance.all_logs(run_id):
        messages.append(entry.user_message)
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        error = getattr(data, "error", None)
        if error is not None:
            messages.append(error.to_string())
    return messages

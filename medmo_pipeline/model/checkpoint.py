"""A checkpoint's identity and its publication: what every stage writes, and how it is named.

A published checkpoint is a directory holding safetensors weights, the processor, ``recipe.yaml``,
``training_log.json``, ``training_curves.png`` and ``lineage.json``; it appears whole or not at all
(``atomic.staged_dir``). Its data version is a hash of its weights alone (``weights_version``), so
two runs that wrote the same weights name the same version, and a child's lineage names its parent
by that version (``parent_reference``). The base-model build, the training stages, the resume key
and evaluation all read checkpoints through these functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from medmo_pipeline.atomic import file_sha256, staged_dir, write_json_atomic, write_text_atomic
from medmo_pipeline.model.loading import CorruptCheckpointError, read_checkpoint_json
from medmo_pipeline.plots import plot_training_curves

# Logged keys drawn in a checkpoint's training_curves.png (those a stage never logged are left out).
CURVE_KEYS = ["loss", "mean_token_accuracy", "entropy", "reward", "rewards/box/mean", "rewards/tag_count/mean",
              "grad_norm"]


def weights_version(directory: Path) -> str:
    """Data version of a checkpoint: sha256 over its safetensors files (names and contents)."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory} has no .safetensors weights")
    for path in files:
        if not path.is_file():  # a FIFO would block the hash for ever
            raise CorruptCheckpointError(f"{path}: not a regular file (a pipe, a device or a directory)")
        digest.update(os.fsencode(path.name))  # a name that is not UTF-8 keeps its own bytes
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def publish_checkpoint(
    model, processor, final_dir: Path, *, lineage: dict, recipe_section: dict, history: list[dict], title: str,
    extra: Callable[[Path], object] | None = None, state_dict: dict | None = None,
) -> tuple[str, dict]:
    """Save model + processor (safetensors), recipe, lineage, curves; visible only when complete.

    ``extra(directory)`` writes further files (plots) into the checkpoint before it is published:
    nothing is written into a published checkpoint afterwards, where a concurrent publisher of the
    same directory could have replaced it. A failed write (disk full) raises an ``OSError`` naming
    ``final_dir`` and leaves it as it was. ``state_dict`` replaces the model's own weights (gathered
    from ZeRO-3 partitions). Returns (data version, lineage as written).
    """
    from medmo_pipeline.model.loading import save_model_and_processor

    with staged_dir(Path(final_dir)) as tmp:
        save_model_and_processor(model, processor, tmp, state_dict=state_dict)
        data_version = weights_version(tmp)
        lineage = {**lineage, "data_version": data_version}
        write_text_atomic(tmp / "recipe.yaml", yaml.safe_dump(recipe_section, sort_keys=False))
        write_json_atomic(tmp / "training_log.json", history)
        plot_training_curves(history, CURVE_KEYS, tmp / "training_curves.png", title)
        if extra is not None:
            extra(tmp)
        write_json_atomic(tmp / "lineage.json", lineage)
    return data_version, lineage


def parent_reference(parent: str) -> dict:
    """Lineage entry for the parent: a checkpoint directory we wrote, or a hub id."""
    path = Path(parent)
    lineage_file = path / "lineage.json"
    if lineage_file.is_file():
        info = read_checkpoint_json(path, lineage_file)
        if not isinstance(info, dict):
            raise CorruptCheckpointError(f"{lineage_file}: a JSON {type(info).__name__}, not the lineage object")
        return {"path": str(path.resolve()), "stage": info.get("stage"), "data_version": info.get("data_version")}
    return {"path": parent, "stage": "hub", "data_version": None}


def parent_version(parent: str) -> str:
    """The parent's data version: from its lineage, its weights, or its hub id."""
    recorded = parent_reference(parent)["data_version"]
    if recorded:
        return recorded
    return weights_version(Path(parent)) if Path(parent).is_dir() else f"hub:{parent}"

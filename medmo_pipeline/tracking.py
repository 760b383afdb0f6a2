"""MLflow runs and lineage records.

One MLflow run per job (one per asset materialization), tagged with the Dagster run id, the asset
and its data/code versions. MLflow is called directly (no dagster-mlflow hook, which has been seen
closing runs early). The store defaults to sqlite under MEDMO_HOME with artifacts beside it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medmo_pipeline import home

# Set by the launcher so jobs can tag their MLflow runs without importing dagster.
DAGSTER_RUN_ID_ENV = "MEDMO_DAGSTER_RUN_ID"
ASSET_KEY_ENV = "MEDMO_ASSET_KEY"
MAX_PARAM = 6000  # characters MLflow keeps of a parameter's value
# What a secret looks like as a value, whatever it is called: credentials in a URL, and the token
# shapes of the services a run talks to (Hugging Face, OpenAI, GitHub, AWS, Slack)
SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@|\bhf_[A-Za-z0-9]{30,}|\bsk-[A-Za-z0-9_-]{20,}"
                          r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bAKIA[0-9A-Z]{16}\b|\bxox[abprs]-[A-Za-z0-9-]{10,}")
SECRET_WORDS = ("TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "CREDENTIAL")  # a name's word ending in one
SECRET_NAMES = frozenset({"PASS", "PAT", "CONNECTION"})  # a name's word that is one (MEDMO_PG_PASS, GITHUB_PAT)
PUBLIC_NAMES = frozenset({ASSET_KEY_ENV})


def looks_secret(name: str, value: object = "") -> bool:
    """Whether an environment variable, setting or field holds a secret: by its name (one of its
    ``_``-separated words is, or ends with, TOKEN, PASSWORD, PASSWD, SECRET, KEY or CREDENTIAL, plural
    too, or is PASS, PAT or CONNECTION), or by its value (``SECRET_VALUE``: an MLflow URI of
    ``https://user:password@host`` is one)."""
    if name in PUBLIC_NAMES:
        return bool(SECRET_VALUE.search(str(value)))
    words = name.upper().replace("-", "_").split("_")
    return (any(word.removesuffix("S").endswith(secret) for word in words for secret in SECRET_WORDS)
            or any(word in SECRET_NAMES for word in words) or bool(SECRET_VALUE.search(str(value))))


def flatten(data: Any, prefix: str = "", *, cut: bool = True) -> dict[str, str]:
    """Nested recipe -> {"stage1.optim.learning_rate": "0.002", ...} (MLflow params are flat); a
    text longer than MLflow takes is cut, unless ``cut`` is False (a search for secrets reads it whole)."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}.", cut=cut))
    else:  # a long text cut where MLflow would refuse it (and with it the run's start)
        text = str(data)
        short = not cut or len(text) <= MAX_PARAM
        out[prefix.rstrip(".")] = text if short else f"{text[:MAX_PARAM - 20]}... ({len(text)} chars)"
    return out


def _experiment_id(mlflow: Any, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = (home.mlflow_dir() / "artifacts" / name).resolve()
    try:
        return mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    except Exception:  # another job created it first
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def mlflow_run(experiment: str, run_name: str, *, params: dict, tags: dict[str, str]) -> Iterator[Any]:
    """Start an MLflow run with the resolved recipe as params and lineage tags."""
    import mlflow

    home.mlflow_dir().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(home.mlflow_tracking_uri())
    experiment_id = _experiment_id(mlflow, experiment)
    all_tags = {
        "dagster_run_id": os.environ.get(DAGSTER_RUN_ID_ENV, ""),
        "dagster_asset": os.environ.get(ASSET_KEY_ENV, ""),
        "git_commit": git_commit(),
        **tags,
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as run:
        flat = flatten(params)
        for start in range(0, len(flat), 100):  # MLflow caps params per batch call
            mlflow.log_params(dict(list(flat.items())[start : start + 100]))
        yield run


def git_commit() -> str:
    """The checkout's commit (with '-dirty' when it has local changes), or '' outside git."""
    root = home.checkout_root()
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if sha and dirty else sha


def lineage_record(
    *,
    stage: str,
    parent: dict | None,
    corpus: dict | None,
    mixture: dict | None,
    recipe_name: str,
    recipe_section: dict,
    recipe_hash: str,
    mlflow_run_id: str,
    started: float,
    metrics: dict,
) -> dict:
    """The ``lineage.json`` contract of docs/architecture.md: what produced a checkpoint, exactly."""
    return {
        "stage": stage,
        "parent": parent,
        "corpus": corpus,
        "mixture": mixture,
        "recipe": {"name": recipe_name, "hash": recipe_hash, "resolved": recipe_section},
        "git_commit": git_commit(),
        "mlflow_run_id": mlflow_run_id,
        "dagster_run_id": os.environ.get(DAGSTER_RUN_ID_ENV, ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": metrics,
    }


REGISTERED_POLICY = "medmo-policy"


def register_checkpoint(path: Path, lineage: dict, *, name: str = REGISTERED_POLICY) -> str:
    """Register a published checkpoint as a new version of MLflow model ``name``; returns the version.

    The version's source is the checkpoint directory itself (nothing is copied); its tags carry the
    lineage a reviewer asks for: data version, parent, corpus version per source, recipe hash, runs.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = home.mlflow_tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.create_registered_model(name, description="MedMO checkpoints produced by the pipeline (the RL "
                                                          "policy; every stage with tracking.register_models: all)")
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    recipe = lineage.get("recipe") or {}
    flat = {"stage": lineage.get("stage"), "data_version": lineage.get("data_version"),
            "dagster_asset": os.environ.get(ASSET_KEY_ENV) or None,
            "recipe_name": recipe.get("name"), "recipe_hash": recipe.get("hash"),
            "mlflow_run_id": lineage.get("mlflow_run_id"), "git_commit": lineage.get("git_commit"),
            "dagster_run_id": lineage.get("dagster_run_id")}
    tags = {k: str(v) for k, v in flat.items() if v is not None}
    parent = lineage.get("parent") or {}
    tags["parent_path"], tags["parent_data_version"] = str(parent.get("path")), str(parent.get("data_version"))
    corpus = lineage.get("corpus") or {}
    tags["corpus_data_version"] = str(corpus.get("data_version"))
    for source, info in (corpus.get("sources") or {}).items():
        tags[f"corpus.{source}"] = f"{info.get('data_version')} ({info.get('revision')})"
    version = client.create_model_version(name, source=Path(path).resolve().as_uri(),
                                          run_id=lineage.get("mlflow_run_id"), tags=tags,
                                          description=f"{lineage.get('stage')} checkpoint at {Path(path).resolve()}")
    return str(version.version)


def register_if_chosen(choice: str, stage: str, path: Path, lineage: dict) -> dict | None:
    """Register checkpoint ``path`` when the recipe's ``tracking.register_models`` covers ``stage`` ("rl": the
    policy only; "all": every stage; "none"); returns ``{"name", "version"}`` or None."""
    if choice == "none" or (choice == "rl" and stage != "rl"):
        return None
    return {"name": REGISTERED_POLICY, "version": register_checkpoint(path, lineage)}

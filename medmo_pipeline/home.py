"""Where everything the pipeline writes lives: one directory, ``MEDMO_HOME``.

Default: ``.medmo/`` in the checkout (or in the working directory for an installed package), so
it is easy to find and to delete. The layout below is the only place paths are decided.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def medmo_home() -> Path:
    value = os.environ.get("MEDMO_HOME")
    if value:
        return Path(value).expanduser().resolve()
    base = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
    return base / ".medmo"


def checkout_root() -> Path:
    """The source checkout (where dagster.yaml and workspace.yaml live)."""
    return _CHECKOUT


def dagster_home() -> Path:
    return medmo_home() / "dagster"


def corpus_dir() -> Path:
    return medmo_home() / "corpus"


def models_dir() -> Path:
    return medmo_home() / "models"


def checkpoints_dir() -> Path:
    return medmo_home() / "checkpoints"


def eval_dir() -> Path:
    return medmo_home() / "eval"


def reports_dir() -> Path:
    return medmo_home() / "reports"


def jobs_dir() -> Path:
    return medmo_home() / "jobs"


def mlflow_dir() -> Path:
    return medmo_home() / "mlflow"


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set (a shared server), else a sqlite store under MEDMO_HOME."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"

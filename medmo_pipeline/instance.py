"""The Dagster instance's ``dagster.yaml`` under ``$MEDMO_HOME/dagster``: the checkout's file, plus the
storage chosen by the environment.

Dagster's YAML cannot branch on an environment variable, so the choice is made here when the file is
written: with ``MEDMO_PG_HOST`` set, run, event-log and schedule storage go to PostgreSQL
(``dagster-postgres``, the ``postgres`` extra); otherwise Dagster's default sqlite files under
DAGSTER_HOME. Connection settings are written as ``{env: VAR}`` references that Dagster resolves when
it loads the instance, so the password (and the rest) never lands in the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml

# postgres_db field -> environment variable, and whether the variable must be set.
POSTGRES_ENV = {
    "hostname": ("MEDMO_PG_HOST", True),
    "port": ("MEDMO_PG_PORT", False),  # Dagster's default 5432 when unset
    "username": ("MEDMO_PG_USER", True),
    "password": ("MEDMO_PG_PASSWORD", True),
    "db_name": ("MEDMO_PG_DB", True),
}


class InstanceConfigError(ValueError):
    pass


def storage_kind(environ: Mapping[str, str] | None = None) -> str:
    """``postgres`` when ``MEDMO_PG_HOST`` is set, else ``sqlite``."""
    environ = os.environ if environ is None else environ
    return "postgres" if environ.get("MEDMO_PG_HOST") else "sqlite"


def postgres_storage(environ: Mapping[str, str] | None = None) -> dict:
    """The ``storage:`` section for PostgreSQL: only variable names, never their values."""
    environ = os.environ if environ is None else environ
    missing = [var for var, required in POSTGRES_ENV.values() if required and var not in environ]
    if missing:
        raise InstanceConfigError(
            f"MEDMO_PG_HOST is set, so Dagster storage is PostgreSQL, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set (needed: "
            f"{', '.join(var for var, required in POSTGRES_ENV.values() if required)}; optional: MEDMO_PG_PORT)")
    db = {field: {"env": var} for field, (var, required) in POSTGRES_ENV.items() if required or var in environ}
    # The driver dagster-postgres installs; a bare postgresql:// means psycopg 3 to SQLAlchemy 2.1.
    db["scheme"] = "postgresql+psycopg2"
    return {"postgres": {"postgres_db": db}}


def instance_yaml(base_text: str, environ: Mapping[str, str] | None = None) -> str:
    """The instance's dagster.yaml: ``base_text`` (the checkout's file) as is for sqlite, or with a
    PostgreSQL ``storage:`` section appended (the base must not already choose a storage)."""
    if storage_kind(environ) == "sqlite":
        return base_text
    base = yaml.safe_load(base_text) or {}
    if any(key in base for key in ("storage", "run_storage", "event_log_storage", "schedule_storage")):
        raise InstanceConfigError("dagster.yaml already configures storage; remove it there or unset MEDMO_PG_HOST")
    section = yaml.safe_dump({"storage": postgres_storage(environ)}, sort_keys=False)
    return (base_text.rstrip("\n") + "\n# Written because MEDMO_PG_HOST is set: PostgreSQL storage, settings read "
            "from the environment.\n" + section)

"""The Dagster instance's ``dagster.yaml`` under ``$MEDMO_HOME/dagster``: the checkout's file, plus the
storage chosen by the environment; written by ``medmo`` unless a person edited it there.

Dagster's YAML cannot branch on an environment variable, so the choice is made here when the file is
written: with ``MEDMO_PG_HOST`` set, run, event-log and schedule storage go to PostgreSQL
(``dagster-postgres``, the ``postgres`` extra); otherwise Dagster's default sqlite files under
DAGSTER_HOME. Connection settings are written as ``{env: VAR}`` references that Dagster resolves when
it loads the instance, so the password (and the rest) never lands in the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

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


# Beside the written file: the sha256 of what medmo wrote, so a later edit by hand is recognised and kept.
WRITTEN_HASH_SUFFIX = ".medmo-sha256"
# The first line of the files medmo wrote before it kept that record: such a file is replaced.
EARLIER_HEADER = "# Dagster instance for this checkout. `medmo` and the Makefile copy it to $MEDMO_HOME/dagster/ and"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_instance_file(base_text: str, target: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """Write the instance file ``target`` from the checkout's ``base_text``, unless someone edited it
    since medmo last wrote it (or it predates that record and differs): then it is kept, and the return
    value says so. A kept file that ignores the PostgreSQL settings in the environment is an error."""
    from medmo_pipeline.atomic import write_text_atomic

    environ = os.environ if environ is None else environ
    text = instance_yaml(base_text, environ)
    record = target.with_name(target.name + WRITTEN_HASH_SUFFIX)
    if target.is_file():
        current = target.read_text()
        if current == text:
            return None
        written = record.read_text().strip() if record.is_file() else None
        earlier = written is None and current.startswith(EARLIER_HEADER)
        if written != _sha256(current) and not earlier:
            if storage_kind(environ) == "postgres" and "postgres" not in (yaml.safe_load(current) or {}).get(
                    "storage", {}):
                raise InstanceConfigError(
                    f"{target} was edited by hand and does not store runs in PostgreSQL, but MEDMO_PG_HOST is "
                    f"set: the edited file wins, so MEDMO_PG_* would be ignored. Add a postgres storage section "
                    f"to it, delete it (medmo writes a new one), or unset MEDMO_PG_HOST")
            return (f"kept {target} (edited by hand; the checkout's dagster.yaml differs from it: delete it to "
                    f"get a fresh copy)")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, text)
    write_text_atomic(record, _sha256(text) + "\n")
    return None


def conflicting_dagster_home(environ: Mapping[str, str], own_home: Path) -> None:
    """Raise when a user's DAGSTER_HOME and the MEDMO_PG_* settings both choose the storage."""
    chosen = environ.get("DAGSTER_HOME")
    if not chosen or Path(chosen).expanduser().resolve() == own_home.resolve():
        return
    if storage_kind(environ) == "postgres":
        raise InstanceConfigError(
            f"DAGSTER_HOME={chosen} and MEDMO_PG_HOST are both set: DAGSTER_HOME wins (its dagster.yaml "
            f"decides where runs are stored), so MEDMO_PG_* would be ignored. Unset DAGSTER_HOME to store runs "
            f"in PostgreSQL from MEDMO_PG_*, or unset MEDMO_PG_HOST to use the instance at DAGSTER_HOME")

"""``MedmoInstance``: the Dagster instance class the checkout's ``dagster.yaml`` names.

Dagster reads ``dagster.yaml`` from ``DAGSTER_HOME``, or, for ``dagster dev`` started without
``DAGSTER_HOME``, from the working directory, while it stores runs in a fresh ``.tmp_dagster_home_*``
folder there. This class changes only the defaults Dagster derives from that folder: storage, compute
logs and artifacts go to ``$MEDMO_HOME/dagster`` instead, so ``dagster dev -w workspace.yaml`` from the
checkout, ``medmo ui`` and ``medmo demo`` all open the same instance. With ``MEDMO_PG_HOST`` set, the
default storage is PostgreSQL (settings read from ``MEDMO_PG_*`` when Dagster loads it). A ``storage:``
section written in ``dagster.yaml`` still wins over both, as in any Dagster instance, and so does a
``DAGSTER_HOME`` a user points elsewhere.

It also sizes the pools: without a ``concurrency: pools: default_limit`` in ``dagster.yaml``, the
default limit is the training pool's slot count for the active profile (``resources.pools``), the
number of training jobs that fit its GPUs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData

from medmo_pipeline import home
from medmo_pipeline.instance import postgres_storage, storage_kind
from resources.pools import training_slots

TEMPORARY_HOME_PREFIX = ".tmp_dagster_home_"  # dagster dev's throwaway home when DAGSTER_HOME is unset
POSTGRES_CLASSES = {"storage": "DagsterPostgresStorage", "run_storage": "PostgresRunStorage",
                    "event_log_storage": "PostgresEventLogStorage", "schedule_storage": "PostgresScheduleStorage"}


def storage_dir(base_dir: str) -> str:
    """Where the instance keeps its files: ``$MEDMO_HOME/dagster`` in place of dagster dev's temporary
    home; a DAGSTER_HOME of the user's choosing is kept."""
    if Path(base_dir).name.startswith(TEMPORARY_HOME_PREFIX):
        return str(home.dagster_home())
    return base_dir


class MedmoInstance(dg.DagsterInstance):
    @classmethod
    def config_schema(cls) -> dict:
        return {}  # no settings of its own

    @classmethod
    def config_defaults(cls, base_dir: str):
        directory = storage_dir(base_dir)
        Path(directory).mkdir(parents=True, exist_ok=True)
        defaults = dict(InstanceRef.config_defaults(directory))
        if storage_kind() == "postgres":
            config_yaml = yaml.safe_dump(postgres_storage()["postgres"])
            for field, class_name in POSTGRES_CLASSES.items():
                defaults[field] = ConfigurableClassData("dagster_postgres", class_name, config_yaml)
        return defaults

    def get_settings(self, settings_key: str):
        settings = super().get_settings(settings_key)
        if settings_key != "concurrency":
            return settings
        pools = dict((settings or {}).get("pools") or {})
        if "default_limit" not in pools:  # one written in dagster.yaml is a person's choice: it stays
            pools["default_limit"] = self.training_slots()
        return {**(settings or {}), "pools": pools}

    def training_slots(self) -> int:
        if getattr(self, "_training_slots", None) is None:
            try:
                self._training_slots = training_slots()
            except ValueError as error:  # a broken profile (ProfileError, a launcher's validation error)
                # The code location reports it when it loads; the instance itself still opens.
                warnings.warn(f"training pool: one slot, the profile could not be read: {error}", stacklevel=2)
                self._training_slots = 1
        return self._training_slots

"""The instance file medmo writes under MEDMO_HOME: rewritten while untouched, kept once edited by hand;
settings that choose the storage twice are an error that says which would win."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

PG = {"MEDMO_PG_HOST": "db", "MEDMO_PG_USER": "u", "MEDMO_PG_PASSWORD": "p", "MEDMO_PG_DB": "d"}


def test_written_then_kept_once_edited(tmp_path):
    from medmo_pipeline.instance import write_instance_file

    base = (ROOT / "dagster.yaml").read_text()
    target = tmp_path / "dagster" / "dagster.yaml"
    assert write_instance_file(base, target, {}) is None and target.read_text() == base
    assert write_instance_file(base + "# newer checkout\n", target, {}) is None  # untouched: follows the checkout
    assert target.read_text().endswith("# newer checkout\n")
    target.write_text(base + "telemetry:\n  enabled: true\n")  # a person's edit
    notice = write_instance_file(base, target, {})
    assert notice and "edited by hand" in notice and target.read_text().endswith("enabled: true\n")


def test_a_file_an_earlier_medmo_wrote_is_replaced(tmp_path):
    from medmo_pipeline.instance import EARLIER_HEADER, write_instance_file

    target = tmp_path / "dagster.yaml"
    target.write_text(EARLIER_HEADER + "\nrun_coordinator: {}\n")  # no record beside it
    base = (ROOT / "dagster.yaml").read_text()
    assert write_instance_file(base, target, {}) is None and target.read_text() == base


def test_an_edited_file_that_ignores_postgres_is_an_error(tmp_path):
    from medmo_pipeline.instance import InstanceConfigError, write_instance_file

    target = tmp_path / "dagster.yaml"
    target.write_text("telemetry:\n  enabled: false\n")
    with pytest.raises(InstanceConfigError, match="the edited file wins"):
        write_instance_file((ROOT / "dagster.yaml").read_text(), target, PG)


def test_a_users_dagster_home_and_postgres_settings_conflict(tmp_path):
    from medmo_pipeline.instance import InstanceConfigError, conflicting_dagster_home

    own = tmp_path / "medmo" / "dagster"
    conflicting_dagster_home({"DAGSTER_HOME": str(tmp_path / "mine")}, own)  # alone: fine, it is used
    conflicting_dagster_home({"DAGSTER_HOME": str(own), **PG}, own)  # medmo's own: fine
    with pytest.raises(InstanceConfigError, match="DAGSTER_HOME wins"):
        conflicting_dagster_home({"DAGSTER_HOME": str(tmp_path / "mine"), **PG}, own)


def test_dagster_devs_throwaway_home_is_replaced_by_medmo_home(medmo_home, monkeypatch):
    import yaml

    from resources.instance import MedmoInstance

    defaults = MedmoInstance.config_defaults(str(medmo_home.parent / ".tmp_dagster_home_abc"))
    assert yaml.safe_load(defaults["storage"].config_yaml) == {"base_dir": str(medmo_home / "dagster")}
    assert str(medmo_home / "dagster") in defaults["compute_logs"].config_yaml
    kept = MedmoInstance.config_defaults(str(medmo_home.parent / "users-home"))
    assert yaml.safe_load(kept["storage"].config_yaml) == {"base_dir": str(medmo_home.parent / "users-home")}
    for name, value in PG.items():
        monkeypatch.setenv(name, value)
    postgres = MedmoInstance.config_defaults(str(medmo_home.parent / ".tmp_dagster_home_abc"))
    assert postgres["storage"].class_name == "DagsterPostgresStorage"
    assert "p" not in yaml.safe_load(postgres["storage"].config_yaml)["postgres_db"].values()  # names only

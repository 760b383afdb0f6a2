"""A registry dataset's own fixture (its published layout, ``fixtures_formats.build_fixture``),
curated as the corpus job curates it, for tests of the adapters on the real layouts."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from fixtures_formats import build_fixture

from medmo_pipeline.config import CorpusRecipe
from medmo_pipeline.data import shards
from medmo_pipeline.data.registry import load_registry
from medmo_pipeline.data.sources import curate_source

REGISTRY = load_registry()
CREDENTIALS = ("PHYSIONET_USERNAME", "STANFORD_AIMI_AGREEMENT", "HF_TOKEN", "DEEPCELL_ACCESS_TOKEN")


def registry_fixture(tmp_path: Path, monkeypatch):
    """(build, curate): ``build(name)`` writes the dataset's fixture under ``tmp_path/data`` and
    returns its folder; ``curate(name)`` curates it (credentials attested) and returns the report,
    checked to account for every row, with ``kept`` (the shards' rows), ``kept_by_id``,
    ``problems`` ((reason, file, record) of each quarantine record) and ``problem_details`` (the
    same with the detail)."""
    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    for variable in CREDENTIALS:
        monkeypatch.setenv(variable, "attested-for-the-test")

    def build(name: str) -> Path:
        entry = REGISTRY.get(name)
        folder = tmp_path / "data" / entry.origin.local_dir
        for spec in entry.adapters:
            build_fixture(spec.family, folder, spec.options)
        return folder

    def curate(name: str) -> dict:
        corpus = CorpusRecipe(kind="registry", registry={"data_root": str(tmp_path / "data"), "sources": [name]})
        report = curate_source(corpus, name, tmp_path / "corpus", seed=0, log=lambda _: None)
        assert report["accounted"]
        report["kept"] = list(shards.iter_rows(Path(report["shard_dir"])))
        report["kept_by_id"] = {row["id"]: row for row in report["kept"]}
        quarantine = pq.read_table(report["quarantine_path"]).to_pylist()
        report["problems"] = [(q["reason"], q["file"], q["record"]) for q in quarantine]
        report["problem_details"] = [(q["reason"], q["file"], q["record"], q["detail"]) for q in quarantine]
        return report

    return build, curate

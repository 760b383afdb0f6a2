"""A mirror may hold file names that are not UTF-8 (an archive unpacked without its names' encoding:
Latin-1 or cp437 bytes). Python keeps such bytes as lone surrogates; Arrow stores only UTF-8. The
row holding such a name is quarantined as ``invalid_utf8`` naming the bytes, and nothing else is
lost: the source's data version is computed, its quarantine table is written (the name escaped),
and its other rows are kept."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from registry_sources import registry_fixture

from medmo_pipeline.data.curation.quarantine import QuarantineWriter
from medmo_pipeline.data.sources import _files_digest


@pytest.fixture
def registry(tmp_path, monkeypatch):
    return registry_fixture(tmp_path, monkeypatch)


def renamed_to_latin1(path: Path) -> bytes:
    """``path`` renamed with Latin-1 bytes before its suffix ("ni\xf1o"): what the name becomes."""
    raw = os.fsencode(path)
    suffix = len(os.fsencode(path.suffix))
    new = raw[:-suffix] + b"_ni\xf1o" + raw[-suffix:]
    os.rename(raw, new)
    return new


def test_an_image_named_in_latin1_is_quarantined_and_the_source_goes_on(registry):
    build, curate = registry
    root = build("tcga")
    before = curate("tcga")["rows_kept"]
    image = min(path for path in root.rglob("*.png") if path.is_file())
    renamed_to_latin1(image)
    (root / "README_\udcf1.txt").write_bytes(b"a note the adapter does not read")  # only the data version sees it

    report = curate("tcga")

    assert report["accounted"] and report["rows_kept"] == before - 1
    [(reason, _, record, detail)] = report["problem_details"]
    assert reason == "invalid_utf8"
    assert "\\udcf1" in record and "not UTF-8" in detail and "\\udcf1" in detail  # the byte, shown escaped
    assert all("\udcf1" not in row["id"] for row in report["kept"])


def test_the_data_version_reads_names_that_are_not_utf8_and_keeps_utf8_names_as_they_were(tmp_path):
    (tmp_path / "caf\u00e9.csv").write_bytes(b"x")
    stat = (tmp_path / "caf\u00e9.csv").stat()
    head = hashlib.sha256(b"x").hexdigest()
    digest, content, count = _files_digest(tmp_path)
    # A UTF-8 name hashes as it did before names that are not UTF-8 were read: no data version moves
    assert content == hashlib.sha256(f"caf\u00e9.csv\0{stat.st_size}\0{head}\n".encode()).hexdigest()
    assert digest == hashlib.sha256(f"caf\u00e9.csv\0{stat.st_size}\0{stat.st_mtime_ns}\0{head}\n".encode()).hexdigest()

    os.rename(os.fsencode(tmp_path / "caf\u00e9.csv"), os.fsencode(tmp_path) + b"/caf\xe9.csv")  # Latin-1
    latin1 = _files_digest(tmp_path)
    assert latin1[2] == count and latin1[1] != content  # read, and told apart from the UTF-8 name


def test_every_quarantine_field_stores_bytes_that_are_not_utf8_escaped(tmp_path):
    writer = QuarantineWriter(tmp_path / "q.parquet")
    writer.add(0, "id\udcff", "s", "invalid_utf8", "detail \udcff", file="a\udcff.csv", record="row \udcfe")
    writer.add(1, "fine", "s", "malformed_row", "x" * 5000, file="b.csv", record="row 2")
    writer.close()
    first, second = pq.read_table(tmp_path / "q.parquet").to_pylist()
    assert (first["row_id"], first["detail"], first["file"], first["record"]) == (
        "id\\udcff", "detail \\udcff", "a\\udcff.csv", "row \\udcfe")
    assert len(second["detail"]) == 2000 and second["file"] == "b.csv"


def test_a_checkpoints_data_version_reads_weight_names_that_are_not_utf8(tmp_path):
    from medmo_pipeline.model.checkpoint import weights_version

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    utf8 = weights_version(tmp_path)
    os.rename(tmp_path / "model.safetensors", os.fsencode(tmp_path) + b"/model-\xff.safetensors")
    assert weights_version(tmp_path) != utf8  # read, and its name counted

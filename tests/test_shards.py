"""Shard writer: round trip, manifest, deterministic bytes, verification, atomic visibility."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medmo_pipeline.data import shards
from medmo_pipeline.data.shards import iter_rows, manifest_hash, read_manifest, verify_shards, write_shards
from medmo_pipeline.data.synthetic import generate_rows
from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

SHARD_ROWS = 8


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    # 21 train + 9 eval rows: four shards, the last one partial, with both splits inside one shard.
    return [
        *generate_rows("synth_xray", "train", 21, image_size=48),
        *generate_rows("synth_xray", "eval", 9, image_size=48),
    ]


def write(rows, out_dir: Path, **kwargs) -> dict:
    return write_shards(iter(rows), out_dir, shard_rows=SHARD_ROWS, source="synth_xray", **kwargs)


def visible(out_dir: Path) -> list[str]:
    return sorted(p.name for p in out_dir.iterdir())


def test_round_trip_returns_the_rows_unchanged(rows, tmp_path):
    write(rows, tmp_path)
    assert list(iter_rows(tmp_path)) == rows


def test_iter_rows_filters_split_and_columns(rows, tmp_path):
    write(rows, tmp_path)
    evaluation = list(iter_rows(tmp_path, split="eval"))
    assert evaluation == [r for r in rows if r["split"] == "eval"]
    slim = list(iter_rows(tmp_path, split="train", columns=["id", "answer"]))
    assert slim == [{"id": r["id"], "answer": r["answer"]} for r in rows if r["split"] == "train"]


def test_manifest_lists_shards_counts_and_schema(rows, tmp_path):
    manifest = write(rows, tmp_path, source_revision="rev-1")
    assert manifest == read_manifest(tmp_path)
    assert visible(tmp_path) == ["manifest.json", *(f"part-{i:05d}.parquet" for i in range(4))]
    assert [s["name"] for s in manifest["shards"]] == [f"part-{i:05d}.parquet" for i in range(4)]
    assert [s["rows"] for s in manifest["shards"]] == [8, 8, 8, 6]
    assert [pq.ParquetFile(tmp_path / s["name"]).metadata.num_rows for s in manifest["shards"]] == [
        8,
        8,
        8,
        6,
    ]
    assert [s["bytes"] for s in manifest["shards"]] == [
        (tmp_path / s["name"]).stat().st_size for s in manifest["shards"]
    ]
    assert manifest["total_rows"] == 30 and manifest["splits"] == {"eval": 9, "train": 21}
    assert manifest["source"] == "synth_xray" and manifest["source_revision"] == "rev-1"
    assert manifest["schema"] == shards.schema_string(SAMPLE_SCHEMA) and "images: list<" in manifest["schema"]


def test_same_rows_give_byte_identical_shards_and_manifest(rows, tmp_path):
    first, second = write(rows, tmp_path / "a"), write(rows, tmp_path / "b")
    assert first == second and manifest_hash(first) == manifest_hash(second)
    for name in [*(s["name"] for s in first["shards"]), "manifest.json"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_manifest_hash_is_canonical_and_tracks_content(rows, tmp_path):
    manifest = write(rows, tmp_path / "a")
    reordered = json.loads(json.dumps(dict(reversed(list(manifest.items())))))
    assert manifest_hash(reordered) == manifest_hash(manifest)
    assert manifest_hash(write(rows[:-1], tmp_path / "b")) != manifest_hash(manifest)
    assert manifest_hash(write(rows, tmp_path / "c", source_revision="other")) != manifest_hash(manifest)


def _seen_while_streaming(rows, tmp_path, at: tuple[int, ...]) -> dict[int, set[str]]:
    """The shards present (a temporary counts as the shard it becomes) when row ``at[i]`` is pulled."""
    seen = {}

    def source():
        for index, row in enumerate(rows):
            if index in at:
                seen[index] = {name.lstrip(".").split(".tmp-")[0] for name in visible(tmp_path)}
            yield row

    write_shards(source(), tmp_path, shard_rows=SHARD_ROWS, source="synth_xray")
    return seen


def _slow_publishing(monkeypatch) -> None:
    """Each shard takes 0.3 s before it is encoded and written: what the writer waits for shows."""
    publish = shards._publish_shard
    monkeypatch.setattr(shards, "_publish_shard", lambda *args: time.sleep(0.3) or publish(*args))


def test_writer_streams_at_most_two_shards_at_a_time(rows, tmp_path, monkeypatch):
    _slow_publishing(monkeypatch)
    seen = _seen_while_streaming(rows, tmp_path, (SHARD_ROWS + 1, 2 * SHARD_ROWS, 3 * SHARD_ROWS))
    # The third shard's rows are pulled while the first two are still being published...
    assert seen[SHARD_ROWS + 1] == set() and seen[2 * SHARD_ROWS] == set()
    # ...and the fourth's only once the first is published: two shards in flight at most.
    assert "part-00000.parquet" in seen[3 * SHARD_ROWS]
    assert seen[3 * SHARD_ROWS] <= {"part-00000.parquet", "part-00001.parquet", "part-00002.parquet"}
    assert list(iter_rows(tmp_path)) == rows


def test_shards_larger_than_the_publishing_budget_go_one_at_a_time(rows, tmp_path, monkeypatch):
    _slow_publishing(monkeypatch)
    monkeypatch.setattr(shards, "PUBLISH_BYTES", 1)  # every shard holds more: one in flight
    seen = _seen_while_streaming(rows, tmp_path, (2 * SHARD_ROWS,))
    assert "part-00000.parquet" in seen[2 * SHARD_ROWS]
    assert seen[2 * SHARD_ROWS] <= {"part-00000.parquet", "part-00001.parquet"}


def test_verify_accepts_a_clean_directory(rows, tmp_path):
    write(rows, tmp_path)
    assert verify_shards(tmp_path) == []


def test_verify_detects_a_corrupted_shard(rows, tmp_path):
    write(rows, tmp_path)
    path = tmp_path / "part-00001.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify_shards(tmp_path)
    assert problems and all(p.startswith("part-00001.parquet") for p in problems)
    assert any("sha256" in p for p in problems)


def test_verify_detects_a_truncated_a_missing_and_an_extra_file(rows, tmp_path):
    write(rows, tmp_path)
    (tmp_path / "part-00000.parquet").write_bytes(b"PAR1")
    (tmp_path / "part-00002.parquet").unlink()
    (tmp_path / "part-00099.parquet").write_bytes(b"stray")
    problems = verify_shards(tmp_path)
    assert any(p.startswith("part-00000.parquet") and "not readable" in p for p in problems)
    assert "part-00002.parquet: missing" in problems
    assert "part-00099.parquet: not in the manifest" in problems


def test_verify_reports_a_missing_manifest(tmp_path):
    (tmp_path / "part-00000.parquet").write_bytes(b"orphan")
    problems = verify_shards(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("manifest.json: unreadable")


@pytest.mark.parametrize("name", ["../escape.parquet", "sub/part-00000.parquet", "/etc/passwd", "..", ""])
def test_manifest_names_cannot_escape_the_directory(rows, tmp_path, name):
    manifest = write(rows, tmp_path)
    manifest["shards"][0]["name"] = name
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError):
        read_manifest(tmp_path)
    with pytest.raises(ValueError):
        list(iter_rows(tmp_path))
    assert verify_shards(tmp_path)[0].startswith("manifest.json: unreadable")


def test_a_failing_row_source_leaves_only_complete_shards_and_no_manifest(rows, tmp_path):
    def source():
        yield from rows[: SHARD_ROWS + SHARD_ROWS // 2]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        write_shards(source(), tmp_path, shard_rows=SHARD_ROWS, source="synth_xray")
    assert visible(tmp_path) == ["part-00000.parquet"]
    assert pq.read_table(tmp_path / "part-00000.parquet").to_pylist() == rows[:SHARD_ROWS]


def test_a_crash_while_writing_a_shard_leaves_no_partial_file(rows, tmp_path, monkeypatch):
    during = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        if ".part-00001.parquet.tmp" in os.readlink(f"/proc/self/fd/{fd}"):
            # Shard 1's bytes are written by now, yet only under a hidden temporary name.
            during.extend(visible(tmp_path))
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(shards.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        write(rows, tmp_path)
    assert "part-00001.parquet" not in during and any(name.startswith(".part-00001.parquet") for name in during)
    left = visible(tmp_path)  # the shards published beside it stay, complete; no temporary is left
    assert "part-00000.parquet" in left and "part-00001.parquet" not in left and "manifest.json" not in left
    assert not [name for name in left if name.startswith(".")]
    for name in left:
        pq.read_table(tmp_path / name)


def test_rewriting_a_directory_drops_stale_shards(rows, tmp_path):
    write(rows, tmp_path)
    manifest = write(rows[:10], tmp_path)
    assert visible(tmp_path) == ["manifest.json", "part-00000.parquet", "part-00001.parquet"]
    assert verify_shards(tmp_path) == [] and manifest["total_rows"] == 10


def test_a_failed_rewrite_leaves_no_manifest_describing_the_old_content(rows, tmp_path):
    write(rows, tmp_path)

    def source():
        yield rows[0]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError):
        write_shards(source(), tmp_path, shard_rows=SHARD_ROWS, source="synth_xray")
    assert "manifest.json" not in visible(tmp_path)


def test_rows_must_have_exactly_the_schema_fields(rows, tmp_path):
    broken = {k: v for k, v in rows[0].items() if k != "boxes"}
    with pytest.raises(ValueError, match="boxes"):
        write([broken], tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_no_rows_give_an_empty_manifest(tmp_path):
    manifest = write([], tmp_path)
    assert manifest["total_rows"] == 0 and manifest["shards"] == [] and list(iter_rows(tmp_path)) == []
    assert verify_shards(tmp_path) == []

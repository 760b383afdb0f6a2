"""Resuming curation: a run killed with SIGKILL part-way, or stopped by a failing disk, leaves only
complete shards under final names; re-running writes only what is missing and ends with the manifest
of an uninterrupted run."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from medmo_pipeline.data import shards
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.synthetic import generate_rows

ROWS = 1200
SHARD_ROWS = 100  # twelve shards
SOURCE = "synth_xray"

# The same rows as ``source_rows`` below, from a slow source, so that a kill lands part-way.
CHILD = """
import sys, time
from pathlib import Path
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.synthetic import generate_rows

def slow_rows():
    for row in generate_rows("synth_xray", "train", int(sys.argv[2]), image_size=64):
        time.sleep(0.002)
        yield row

curate(slow_rows(), Path(sys.argv[1]), source="synth_xray", shard_rows=int(sys.argv[3]))
"""


def source_rows():
    return generate_rows(SOURCE, "train", ROWS, image_size=64)


def run_curation(out_dir: Path) -> dict:
    return curate(source_rows(), out_dir, source=SOURCE, shard_rows=SHARD_ROWS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted run: its manifest bytes and each shard's sha256 by name."""
    out = tmp_path_factory.mktemp("reference") / "out"
    report = run_curation(out)
    return {"manifest": (out / shards.MANIFEST_NAME).read_bytes(),
            "sha256": {shard["name"]: shard["sha256"] for shard in report["manifest"]["shards"]},
            "quarantine": Path(report["quarantine_path"]).read_bytes()}


def finished_files(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every file under a final (not hidden) name."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if not p.name.startswith(".")}


def assert_only_complete_shards(out: Path, reference: dict) -> None:
    """Every file under a final name is a shard with exactly the bytes of the uninterrupted run."""
    for name in finished_files(out):
        assert name in reference["sha256"], f"{name} is visible before the run finished"
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == reference["sha256"][name], name


def kill_when_shards_appear(out: Path, count: int, timeout: float = 60.0) -> None:
    """Start curation in a child process and SIGKILL it once ``count`` shards are in place."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(ROWS), str(SHARD_ROWS)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while len(list(out.glob("part-*.parquet"))) < count:
            assert child.poll() is None, f"curation ended before the kill: {child.stdout.read().decode()}"
            assert time.monotonic() < deadline, "no shard appeared in time"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL


def test_a_run_killed_part_way_resumes_to_the_manifest_of_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "out"
    kill_when_shards_appear(out, count=2)
    before = finished_files(out)
    assert shards.MANIFEST_NAME not in before and 2 <= len(before) < len(reference["sha256"])
    assert_only_complete_shards(out, reference)

    run_curation(out)

    assert (out / shards.MANIFEST_NAME).read_bytes() == reference["manifest"]
    assert (tmp_path / "out.quarantine.parquet").read_bytes() == reference["quarantine"]
    assert shards.verify_shards(out) == []  # the killed run's temporaries are gone too
    after = finished_files(out)
    assert {name: after[name] for name in before} == before  # shards done before the kill: not rewritten
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_a_rerun_keeps_matching_shards_and_rewrites_damaged_ones(tmp_path, reference):
    out = tmp_path / "out"
    run_curation(out)
    damaged = out / "part-00003.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the hash tells
    damaged.write_bytes(bytes(data))
    (out / "part-00005.parquet").unlink()
    before = finished_files(out)

    run_curation(out)

    assert (out / shards.MANIFEST_NAME).read_bytes() == reference["manifest"]
    assert shards.verify_shards(out) == []
    after = finished_files(out)
    assert after[damaged.name] != before[damaged.name]
    unchanged = set(before) - {damaged.name, shards.MANIFEST_NAME}
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}


def test_a_full_disk_names_the_shard_leaves_nothing_half_written_and_a_retry_completes(
        tmp_path, reference, monkeypatch):
    out = tmp_path / "out"
    real_write = os.write
    failed = []

    def write_until_disk_full(fd, data):
        if ".part-00004.parquet.tmp-" in os.readlink(f"/proc/self/fd/{fd}"):
            real_write(fd, bytes(data)[: len(data) // 2])  # half of shard 4 lands, then the disk is full
            failed.append(sorted(p.name for p in out.iterdir()))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(shards.os, "write", write_until_disk_full)
    with pytest.raises(shards.ShardWriteError) as error:
        run_curation(out)
    assert error.value.errno == errno.ENOSPC and isinstance(error.value, OSError)
    assert str(out / "part-00004.parquet") in str(error.value) and "No space left on device" in str(error.value)
    assert any(name.startswith(".part-00004.parquet.tmp-") for name in failed[0])  # it was half there
    finished = sorted(finished_files(out))  # no manifest; the shard after it may be published beside it
    assert finished[:4] == [f"part-{i:05d}.parquet" for i in range(4)] and "part-00004.parquet" not in finished
    assert set(finished[4:]) <= {"part-00005.parquet"}
    assert_only_complete_shards(out, reference)
    assert not list(out.glob(".*")) and not list(tmp_path.glob("*quarantine*")) and not list(tmp_path.glob(".*"))
    before = finished_files(out)

    monkeypatch.setattr(shards.os, "write", real_write)  # space is back
    run_curation(out)

    assert (out / shards.MANIFEST_NAME).read_bytes() == reference["manifest"]
    assert shards.verify_shards(out) == []
    after = finished_files(out)
    assert {name: after[name] for name in before} == before

"""Image checks on worker processes (``image_check_workers``) answer exactly as the calling thread
does, cost nothing when a worker dies, and end with the process that started them. Real worker
processes throughout."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_curation_batch import outcome
from test_curation_fuzz import _images, _row

from medmo_pipeline.data import image_check_workers, shards
from medmo_pipeline.data.curation import CurationLimits, ImageChecker, curate
from medmo_pipeline.data.curation import batch as batch_checks
from medmo_pipeline.data.curation.batch import check_batch
from medmo_pipeline.data.image_limits import ImageError, ImageLimits
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.png_batch import hashed_pngs
from medmo_pipeline.data.synthetic import generate_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _workers_never_fall_back(request, caplog):
    """Every test here but the one that kills a worker gets its answers from the workers themselves:
    a worker that failed would be hidden by the fallback, which answers the same."""
    with caplog.at_level(logging.WARNING, logger=image_check_workers.__name__):
        yield
    if request.node.name != "test_a_killed_worker_costs_nothing":
        assert not [record for record in caplog.records if record.name == image_check_workers.__name__]


def _mixed_images(count: int, seed: int = 0) -> pa.Array:
    """``count`` images drawn from good and hostile ones (other formats, malformed and oversized
    PNGs, random pixel streams), as a slice with an offset into a larger array."""
    rng = np.random.default_rng(seed)
    pool = [data for data, _ in _images(rng)]
    picked = [pool[int(rng.integers(len(pool)))] for _ in range(count + 7)]
    return pa.array(picked, pa.binary()).slice(7)


def _same(left, right) -> None:
    assert left[0] == right[0]
    for one, other in zip(left[1:], right[1:]):
        assert np.array_equal(one, other)


def test_workers_answer_as_the_calling_thread_does(caplog):
    images = _mixed_images(image_check_workers.MIN_POOL_IMAGES + 101)
    pending = image_check_workers.submit(images, ImageLimits(), workers=2)
    with caplog.at_level(logging.WARNING, logger=image_check_workers.__name__):
        answer = pending.result()
    assert pending.parts is not None and not caplog.records  # the workers answered, not the fallback
    _same(answer, hashed_pngs(images, ImageLimits(), threads=1))
    assert 0 < answer[1].sum() < len(images)  # both kinds of verdict are in the batch
    # what the PNG checks left open, inspected in the workers as inspect_image does it here
    left_open = np.flatnonzero(~answer[1]).tolist()
    assert sorted(answer[4]) == left_open
    for index in left_open:
        assert _verdict(answer[4][index]) == _verdict(_inspect(images[index].as_py())), index
    assert {type(answer[4][index]) for index in left_open} == {tuple, ImageError}


def _inspect(data: bytes):
    try:
        return inspect_image(data, ImageLimits())
    except ImageError as error:
        return error


def _verdict(result) -> tuple:
    return (result.reason, result.detail) if isinstance(result, ImageError) else result


def test_a_small_batch_stays_on_the_calling_thread():
    pending = image_check_workers.submit(_mixed_images(10), ImageLimits(), workers=2)
    assert pending.parts is None


def test_a_killed_worker_costs_nothing(caplog):
    images = _mixed_images(image_check_workers.MIN_POOL_IMAGES * 2, seed=1)
    expected = hashed_pngs(images, ImageLimits(), threads=1)
    workers = image_check_workers._workers(2)
    victim = workers[0].process
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    with caplog.at_level(logging.WARNING, logger=image_check_workers.__name__):
        pending = image_check_workers.PendingChecks(images, ImageLimits(), [
            worker.submit(share, ImageLimits()) for worker, share in zip(workers, image_check_workers._shares(images, 2))])
        _same(pending.result(), expected)  # the batch checked here instead
    assert "image-check workers failed" in caplog.text
    pending = image_check_workers.submit(images, ImageLimits(), workers=2)  # a new worker replaces it
    _same(pending.result(), expected)
    assert pending.parts is not None and victim.pid not in _worker_pids()


def _worker_pids() -> list[int]:
    return [worker.process.pid for worker in image_check_workers._WORKERS[1]] if image_check_workers._WORKERS else []


def test_a_large_batch_of_random_rows_is_decided_as_check_row_decides():
    """The fuzz test's rows, in one batch large enough for the workers."""
    rng = np.random.default_rng(11)
    images = _images(rng)
    rows = [_row(rng, index, images) for index in range(700)]
    limits = CurationLimits()
    started = batch_checks.gathered(rows, limits=limits)
    assert started.checks is not None and started.checks.parts is not None  # checked by the workers
    fast = check_batch(rows, source="fuzz", images=ImageChecker(limits.image), limits=limits,
                       found=batch_checks.candidates(rows, images=ImageChecker(limits.image), limits=limits,
                                                     started=started))
    slow = check_batch(rows, source="fuzz", images=ImageChecker(limits.image), limits=limits, vectorised=False)
    for index in range(len(rows)):
        assert outcome(fast, index) == outcome(slow, index), index
    assert fast.table.equals(slow.table)


def test_curation_writes_the_same_shards_with_and_without_workers(tmp_path, monkeypatch):
    rows = [*generate_rows("synth_xray", "train", 1300, image_size=32),
            *generate_rows("synth_cells", "train", 900, image_size=32)]
    rows[5]["images"][0]["bytes"] = rows[5]["images"][0]["bytes"][:60]  # one cut image: quarantined by both
    used = []
    submit = image_check_workers.submit
    monkeypatch.setattr(image_check_workers, "submit",
                        lambda *args, **kw: used.append(pending := submit(*args, **kw)) or pending)
    with_workers = curate(rows, tmp_path / "with", source="synth", shard_rows=1000)
    assert any(pending.parts is not None for pending in used)
    monkeypatch.setattr(image_check_workers, "MIN_POOL_IMAGES", 10**9)
    used.clear()
    without = curate(rows, tmp_path / "without", source="synth", shard_rows=1000)
    assert all(pending.parts is None for pending in used)
    assert with_workers["manifest"]["shards"] == without["manifest"]["shards"]
    assert with_workers["quarantined_by_reason"] == without["quarantined_by_reason"] == {"image_truncated": 1}
    assert not shards.verify_shards(tmp_path / "with")


def test_workers_end_with_the_process_that_started_them():
    script = (
        "import pyarrow as pa\n"
        "from medmo_pipeline.data import image_check_workers as w\n"
        "from medmo_pipeline.data.image_limits import ImageLimits\n"
        "images = pa.array([b'not an image %d' % i for i in range(w.MIN_POOL_IMAGES)], pa.binary())\n"
        "assert w.submit(images, ImageLimits(), workers=2).result()[1].sum() == 0\n"
        "print(*[worker.process.pid for worker in w._WORKERS[1]])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    pids = [int(pid) for pid in out.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "a worker outlived its process"


def test_workers_read_only_what_they_are_sent():
    """Shares cover the batch in order, each whole and alone: offsets rebased, neighbours' bytes not sent."""
    images = _mixed_images(40)
    for count, most_bytes in ((2, None), (2, 5000), (3, 1)):
        shares = image_check_workers._shares(images, count, most_bytes)
        assert len(shares) >= count
        sent = []
        for offsets, data in shares:
            assert offsets[0] == 0 and offsets[-1] == len(data) and len(offsets) > 1
            sent += [bytes(data[low:high]) for low, high in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
        assert sent == images.to_pylist()


def test_more_shares_than_workers_answer_in_order(monkeypatch):
    monkeypatch.setattr(image_check_workers, "SHARE_BYTES", 20_000)
    images = _mixed_images(image_check_workers.MIN_POOL_IMAGES + 50, seed=3)
    pending = image_check_workers.submit(images, ImageLimits(), workers=2)
    assert len(pending.parts) > 10
    _same(pending.result(), hashed_pngs(images, ImageLimits(), threads=1))

"""A batch's image checks (``png_batch.hashed_pngs``) on worker processes, while the caller goes on.

Why processes and not threads: libdeflate's inflate and sha256 release the GIL, but the few lines
of Python each image needs between those calls make two threads hand the GIL back and forth, so on
two cores two threads checked a batch no faster than one (``benches/curation.py`` measures the
difference). Each worker checks its contiguous share of the batch on one thread; the caller gets a
``PendingChecks`` at once and takes the result when it needs it, so a source's next batch is read
and gathered while this one's images are checked.

The workers are this module run as a program (``python -m medmo_pipeline.data.image_check_workers``)
reading requests on stdin and answering on stdout, each a length-prefixed pickle between this
process and its own children. They are started on first use, not forked (this process's other
threads may hold locks) and not through ``multiprocessing`` (whose workers import the caller's
main module again, re-running a script that has no ``__main__`` guard). A worker ends when its
stdin closes: at this process's exit, or when it dies.

Small batches, and a process that may use one core, are checked on the calling thread: a worker
costs a process start, and the answer is the same either way. If a worker cannot be started or
fails, the batch is checked on the calling thread instead, so a source never fails because of the
workers; a check that itself raises raises the same way on both.
"""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import pickle
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from medmo_pipeline.data.image_limits import ImageError, ImageLimits
from medmo_pipeline.data.images import InspectCache
from medmo_pipeline.data.png_batch import binary_layout, check_threads, hashed_pngs

MIN_POOL_IMAGES = 512  # fewer images, and under MIN_POOL_BYTES, are checked on the calling thread:
MIN_POOL_BYTES = 8 << 20  # the hand-over would cost more than it saves
SHARE_BYTES = 32 << 20  # a worker is sent at most this much at a time (its shared memory's size)
_LOG = logging.getLogger(__name__)
_LENGTH = struct.Struct("<Q")

# hashed_pngs's (hashes, ok, width, height), and what ``inspect_image`` said of the images it left
# open: {index: (width, height, format) or ImageError}; empty when the calling thread is to inspect them
Checked = tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict]


class WorkerFailed(RuntimeError):
    """A worker process could not be started, or ended without answering."""


class PendingChecks:
    """The checks of one batch of images, running or done; ``result()`` waits for them."""

    def __init__(self, images: pa.BinaryArray, limits: ImageLimits, parts: list[Future] | None):
        self.images, self.limits, self.parts = images, limits, parts

    def result(self) -> Checked:
        try:
            done = [part.result() for part in self.parts or ()]
        except (WorkerFailed, OSError) as error:  # the workers, not the images: check here instead
            _LOG.warning("image-check workers failed (%s); checking the batch on this thread", error)
            done = []
        if not done:  # on this thread; the caller inspects what the PNG checks leave open
            return (*hashed_pngs(self.images, self.limits), {})
        hashes = [digest for part in done for digest in part[0]]
        inspected, first = {}, 0
        for part in done:
            for index, width, height, fmt, reason, detail in part[4]:
                inspected[first + index] = ImageError(reason, detail) if reason else (width, height, fmt)
            first += len(part[0])
        return (hashes, *(np.concatenate([part[field] for part in done]) for field in (1, 2, 3)), inspected)


def submit(images: pa.BinaryArray, limits: ImageLimits, workers: int | None = None) -> PendingChecks:
    """Start checking ``images`` (``hashed_pngs``) on ``workers`` processes (one per core this
    process may use, by default); the result comes from the returned object."""
    count = workers or check_threads()
    small = len(images) < MIN_POOL_IMAGES and images.nbytes < MIN_POOL_BYTES
    if count < 2 or small or images.null_count or not hasattr(os, "memfd_create"):
        return PendingChecks(images, limits, None)
    try:
        started = _workers(count)
    except (WorkerFailed, OSError) as error:
        _LOG.warning("image-check workers unavailable (%s); checking on this thread", error)
        return PendingChecks(images, limits, None)
    return PendingChecks(images, limits, [started[index % count].submit(share, limits)
                                          for index, share in enumerate(_shares(images, count))])


def _shares(images: pa.BinaryArray, count: int, most_bytes: int | None = None) -> list[tuple[np.ndarray, memoryview]]:
    """``images`` cut into contiguous shares of about equal bytes, at least ``count`` of them and
    about ``most_bytes`` (``SHARE_BYTES``) each at most, each as (int64 offsets from 0, a view of its
    bytes): only a share's own bytes go to its worker, and a worker's shared memory holds one share."""
    most_bytes = most_bytes or SHARE_BYTES
    offsets, view = binary_layout(images)
    total = int(offsets[-1] - offsets[0])
    pieces = max(count, -(-total // most_bytes))
    targets = offsets[0] + total * np.arange(1, pieces) // pieces  # even cuts by bytes
    cuts = np.unique(np.concatenate([[0], np.searchsorted(offsets, targets, side="right") - 1, [len(images)]]))
    shares = []
    for low, high in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        part = offsets[low:high + 1]
        shares.append((part - part[0], view[part[0]:part[-1]]))
    return shares


def check_share(shared: memoryview, count: int, limits: ImageLimits) -> tuple:
    """What a worker answers: ``hashed_pngs`` of the ``count`` images laid out in ``shared`` (their
    ``count + 1`` int64 offsets, then their bytes), on one thread (the other workers have the other
    cores), and ``inspect_image`` of the images it left open (JPEGs, say: decoded here, not on the
    caller's thread), each as (index, width, height, format, reason, detail), reason '' if fine."""
    offsets = shared[:8 * (count + 1)]
    ends = np.frombuffer(offsets, dtype=np.int64)
    data = shared[len(offsets):len(offsets) + int(ends[-1])]
    images = pa.Array.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    hashes, ok, width, height = hashed_pngs(images, limits, threads=1)
    inspected = [(index, *_inspected(hashes[index], data[ends[index]:ends[index + 1]], limits))
                 for index in np.flatnonzero(~ok).tolist()]
    return hashes, ok, width, height, inspected


_INSPECTED: dict[ImageLimits, InspectCache] = {}  # a worker's inspect_image results, as curation's own cache


def _inspected(digest: str, data: memoryview, limits: ImageLimits) -> tuple[int, int, str, str, str]:
    """``inspect_image`` of ``data`` as (width, height, format, '', '') or (0, 0, '', reason, detail),
    remembered by hash (``InspectCache``): a VQA set asks many questions of one image."""
    if limits not in _INSPECTED:
        _INSPECTED[limits] = InspectCache(limits)
    result = _INSPECTED[limits].inspect(data, digest)
    return (*result, "", "") if type(result) is tuple else (0, 0, "", result.reason, result.detail)


class _Worker:
    """One worker process, the shared memory (a ``memfd``) its requests' images are written to,
    and a thread here that writes a request, sends it and waits for the answer (blocked on the
    pipe, without the GIL), one request at a time."""

    def __init__(self):
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.memory, self.size, self.mapped = os.memfd_create("medmo-image-checks"), 0, None
        try:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(self.memory)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                            pass_fds=(self.memory,))
        except OSError as error:
            os.close(self.memory)
            raise WorkerFailed(f"could not start {sys.executable} -m {__name__}: {error}") from error
        self.sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-check-worker")

    def submit(self, share: tuple[np.ndarray, memoryview], limits: ImageLimits) -> Future:
        return self.sender.submit(self._ask, share, limits)

    def _ask(self, share: tuple[np.ndarray, memoryview], limits: ImageLimits) -> Checked:
        offsets, data = share
        size = offsets.nbytes + len(data)
        if size > self.size:  # grow the shared memory (the worker maps what each request says)
            if self.mapped is not None:
                self.mapped.close()
            self.size = max(size, 2 * self.size)
            os.ftruncate(self.memory, self.size)
            self.mapped = mmap.mmap(self.memory, self.size)
        self.mapped[:offsets.nbytes] = offsets.tobytes()
        self.mapped[offsets.nbytes:size] = data
        try:
            _send(self.process.stdin, (len(offsets) - 1, size, limits))
            return _receive(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            raise WorkerFailed(f"worker {self.process.pid} ended (exit code {self.process.poll()}): {error}") from error

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        self.sender.shutdown(wait=False, cancel_futures=True)
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        if self.mapped is not None:
            self.mapped.close()
        os.close(self.memory)


_WORKERS: list = []  # [pid, [workers]]: a forked child starts its own
_LOCK = threading.Lock()


def _workers(count: int) -> list[_Worker]:
    """``count`` live workers of this process, (re)started as needed."""
    with _LOCK:
        if not _WORKERS or _WORKERS[0] != os.getpid():
            _WORKERS[:] = [os.getpid(), []]
        workers = [worker for worker in _WORKERS[1] if worker.alive()]
        for worker in _WORKERS[1]:
            if worker not in workers:
                worker.close()
        while len(workers) < count:
            workers.append(_Worker())
        _WORKERS[1] = workers
        return workers[:count]


def worker_pids() -> list[int]:
    """The process ids of this process's live workers."""
    if not _WORKERS or _WORKERS[0] != os.getpid():
        return []
    return [worker.process.pid for worker in _WORKERS[1] if worker.alive()]


def workers_cpu_seconds() -> float:
    """CPU time the live workers of this process have used so far (from ``/proc``; 0 elsewhere):
    for a bench that counts the CPU a curation costs, theirs included."""
    total = 0
    for pid in worker_pids():
        try:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])  # ns on a CPU
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


@atexit.register
def _close_workers() -> None:
    if _WORKERS and _WORKERS[0] == os.getpid():
        for worker in _WORKERS[1]:
            worker.close()


def _send(stream: BinaryIO, value) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _receive(stream: BinaryIO):
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the pipe closed")
    (size,) = _LENGTH.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the pipe closed mid-message")
    return pickle.loads(payload)  # our own child's answer, over our own pipe


def _serve(memory: int) -> None:
    """A worker's loop: for each request on stdin, ``check_share`` of the images the caller wrote
    into the shared ``memory``, answered on stdout; until stdin closes."""
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answers' pipe
    while True:
        try:
            count, size, limits = _receive(requests)
        except EOFError:
            return
        with mmap.mmap(memory, size, access=mmap.ACCESS_READ) as shared:
            view = memoryview(shared)
            try:
                answer = check_share(view, count, limits)
            finally:
                view.release()
        _send(answers, answer)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))

"""Write-then-rename, so a reader never sees a half-written file or directory.

Writers fill a hidden sibling (``.tmp-<pid>-<random>-<name>``) and rename it onto the final name.
Two processes publishing the same directory each fill their own copy; the swap onto the final name
happens under an exclusive lock on ``.<name>.lock`` beside it, so the last one to finish wins and
the final name always holds one writer's complete output, never a mix. A write that fails (disk
full, I/O error) removes its partial copy, leaves the final name as it was, and raises an
``OSError`` that keeps the errno and names the destination; running the same write again once the
cause is fixed starts from scratch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _sibling(final: Path, kind: str) -> Path:
    """A hidden name next to ``final`` that no other writer (process or thread) will pick.

    ``final``'s name comes last so its suffix survives (``savefig`` picks the format from it).
    """
    return final.parent / f".{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}"


def _publish_error(error: OSError, final: Path) -> OSError:
    """``error`` restated so it names what was not published (errno kept: ENOSPC stays ENOSPC)."""
    detail = error.strerror or str(error)
    if error.filename:
        detail += f" ({error.filename})"
    message = f"could not publish {final}: {detail}; {final} was left as it was and the partial copy removed"
    return OSError(error.errno, message) if error.errno else OSError(message)


@contextmanager
def publish_lock(final: Path) -> Iterator[None]:
    """Exclusive lock for replacing ``final``; the kernel drops it if the holder dies."""
    with open(final.parent / f".{final.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _fsync_tree(root: Path) -> None:
    """Flush staged files and directories, so a crash after the rename cannot expose empty files."""
    for path in sorted(root.rglob("*"), reverse=True) + [root]:
        if path.is_symlink():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_in(staged: Path, final: Path) -> None:
    """Rename ``staged`` onto ``final`` (caller holds the lock); a replaced ``final`` is restored on failure."""
    if not final.exists():
        os.replace(staged, final)
        return
    old = _sibling(final, "old")
    os.replace(final, old)
    try:
        os.replace(staged, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _removed_on_failure(staged: Path, final: Path, remove) -> Iterator[None]:
    """On any error, ``remove(staged)``; an I/O error is restated to name ``final``."""
    try:
        yield
    except OSError as error:
        remove(staged)
        if error.errno is None:  # raised by code, not by the system: already says what it means
            raise
        raise _publish_error(error, final) from error
    except BaseException:
        remove(staged)
        raise


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; on success it becomes ``final`` in one rename.

    On any error the temporary directory is removed and ``final`` is untouched. If ``final``
    already exists (a finished earlier run with the same inputs, or a concurrent writer that
    finished first), it is replaced whole.
    """
    final = Path(final)
    staged = _sibling(final, "tmp")
    with _removed_on_failure(staged, final, lambda p: shutil.rmtree(p, ignore_errors=True)):
        final.parent.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        yield staged
        _fsync_tree(staged)
        with publish_lock(final):
            _swap_in(staged, final)


@contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (by name, e.g. ``savefig``); then rename it."""
    path = Path(path)
    staged = _sibling(path, "tmp")
    with _removed_on_failure(staged, path, lambda p: p.unlink(missing_ok=True)):
        path.parent.mkdir(parents=True, exist_ok=True)
        yield staged
        with open(staged, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, path)


def write_text_atomic(path: Path, text: str) -> None:
    with staged_file(path) as staged:
        staged.write_text(text)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()

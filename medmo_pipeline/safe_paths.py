"""Joining paths read from data files onto a dataset root, without ever leaving that root, and
reading the files they name within a size.

Dataset annotations name their images by relative path; a hostile or broken file could name
``../../etc/passwd``, an absolute path, or a symlink pointing out of the mirror. ``safe_join`` is the
only way adapters turn such a name into a ``Path``. A file read whole (an image, a report, a label
file) is read with ``read_bounded``: a 2 GB file (a sparse one costs nothing on disk) named
``lesion.png`` is refused from its declared size, not read into memory.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A relative path from a data file that would resolve outside its dataset root."""


def _relative_parts(text: str, what: str) -> tuple[str, ...]:
    """Components of a relative path from a data file or registry; refuses anything that climbs out."""
    if not text or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} is empty or contains a NUL byte")
    parts = PureWindowsPath(text).parts if "\\" in text else PurePosixPath(text).parts
    # anchor: a drive, and a root without one ('\\etc\\passwd' is rooted on Windows; joined here it
    # named a folder called '\\' under the root)
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).anchor:
        raise UnsafePathError(f"{what} {text!r} is absolute; data files must use paths relative to the root")
    if ".." in parts:
        raise UnsafePathError(f"{what} {text!r} climbs out of the dataset root with '..'")
    return parts


class FileTooLarge(ValueError):
    """A file larger than its kind of file may be; nothing of it was kept in memory."""

    def __init__(self, what: str, size: int, limit: int):
        super().__init__(f"{what} holds {size} bytes, over the {limit} bytes a file of its kind may hold")
        self.size, self.limit = size, limit


def read_bounded(path: Path, limit: int, what: str = "") -> bytes:
    """``path``'s bytes, or FileTooLarge (naming ``what``, the path by default) when the file system
    declares more than ``limit`` bytes, or more arrive while reading (a file that grows). Anything
    but a regular file (a pipe, whose reader would wait forever, a device, a directory) is an
    OSError naming it."""
    what = what or str(path)
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a pipe opens at once
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):  # checked before open() wraps it: a directory would fail there, unclosed
        os.close(descriptor)
        raise OSError(errno.EINVAL, f"{what} is not a regular file (a pipe, a device or a directory)")
    with open(descriptor, "rb") as handle:
        size = info.st_size
        if size > limit:
            raise FileTooLarge(what, size, limit)
        # What the file system declares, and a byte more to see a file that grew: asked for the
        # limit, read() reserves that much (256 MB for an image) before reading a byte
        data = handle.read(size + 1)
        if len(data) > size:
            data += handle.read(limit + 1 - len(data))
    if len(data) > limit:
        raise FileTooLarge(what, len(data), limit)
    return data


def check_relative(text: str) -> None:
    """Refuse a path from a data file that is absolute or climbs with '..', before any prefix is
    put in front of it (``images//etc/passwd`` would otherwise look relative)."""
    _relative_parts(text, "path")


def _inside(root_resolved: Path, real: Path) -> bool:
    # by its text: ``real.parents`` builds every parent, each as long as the path (a junk path of
    # thousands of components, checked at each step of ``_real_inside``, took minutes)
    root, path = str(root_resolved), str(real)
    return path == root or path.startswith(root.rstrip("/") + "/")


# Folders below a walk's start (MIMIC-CXR's files/pXX/pXXXXXXXX/sXXXXXXXX: 4; MedTrinity's unpacked
# shards: about 6). Each match of a walk is then checked a component at a time, so a tree of 1,500
# nested folders took 43 s to glob (a link looked up per component of each); deeper, minutes.
MAX_FOLDER_DEPTH = 64

MAX_SYMLINKS = 40  # links followed in one path before it counts as a loop (Linux's own limit)


def _real_inside(root_resolved: Path, start: Path, parts: tuple[str, ...], text: str) -> Path:
    """Where ``start`` (a real folder inside ``root_resolved``) joined with ``parts`` really is,
    following symlinks one component at a time: UnsafePathError at the first step that leads
    outside the root, before anything there is looked at, and for a loop of links.

    Not ``Path.resolve``: it follows a link out to its end (readlink and lstat outside the root),
    then stats the target; a link out to a loop came back as RuntimeError ``malformed_record``, to
    anything else ``unsafe_path``, telling the row what lies outside. A loop inside the root was a
    ``RuntimeError`` too."""
    current, pending, links = start, list(reversed(parts)), 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":  # only from a link's target; looked at once a name below it is
            current = current.parent
            continue
        current = current / part
        if _inside(current, root_resolved):  # a real folder above the root (a link's absolute target)
            continue
        if not _inside(root_resolved, current):
            raise UnsafePathError(f"path {text!r} leads to {current}, outside the dataset root {root_resolved}")
        try:
            target = os.readlink(current)
        except OSError as error:  # not a link: a name, left to whoever opens it
            if error.errno != errno.EINVAL and ".." not in pending:
                # not there (or a name too long): nothing below it is a link or can be opened
                current = current.joinpath(*reversed(pending))
                break
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise UnsafePathError(f"path {text!r} goes round a loop of symlinks (more than {MAX_SYMLINKS} followed)")
        steps = PurePosixPath(target).parts
        current, steps = (Path("/"), steps[1:]) if os.path.isabs(target) else (current.parent, steps)
        pending.extend(reversed(steps))
    if not _inside(root_resolved, current):  # ended above the root ('..' in a link's target)
        raise UnsafePathError(f"path {text!r} leads to {current}, outside the dataset root {root_resolved}")
    return current


def _check_inside(root_resolved: Path, base: Path, path: Path) -> None:
    """UnsafePathError when ``path`` (below ``base``, a folder inside ``root_resolved``) really is outside."""
    relative = path.relative_to(base)
    _real_inside(root_resolved, Path(os.path.realpath(base)), relative.parts, relative.as_posix())


def safe_join(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refusing anything that could point outside ``root``.

    Rejected: empty names, NUL bytes, absolute paths (POSIX or Windows, drive letters included),
    any ``..`` component, and paths whose resolved target (following symlinks) is not inside the
    resolved ``root``. Backslashes count as separators, as in annotation files written on Windows.

    >>> safe_join(Path("/data/vqa_rad"), "images/synpic1.jpg").as_posix()
    '/data/vqa_rad/images/synpic1.jpg'
    """
    text = str(relative)
    parts = _relative_parts(text, "path")
    root_resolved = Path(root).resolve()
    joined = root_resolved.joinpath(*parts)
    _real_inside(root_resolved, root_resolved, parts, text)
    return joined


def safe_glob(base: Path, pattern: str, *, refuse_outside: bool = True, root: Path | None = None) -> list[Path]:
    """The paths under ``base`` matching ``pattern`` (a registry's, as ``Path.glob`` reads it), sorted.

    Each component matches names whatever their case (``*.png`` finds ``x.PNG``, as adapters accept
    suffixes in any case). ``**`` also walks symlinked folders whose real location is inside
    ``root`` (the dataset root, ``base`` when not given: a large mirror is often spread over
    folders), each real folder once, so a link back to an ancestor does not loop; a folder linked
    outside is UnsafePathError naming it, and is never listed.

    The pattern must be relative without ``..`` (as for ``safe_join``), and a match whose real
    location is outside ``root`` (a symlink pointing out of the mirror) is refused; with
    ``refuse_outside=False`` such matches are returned and the caller must ``safe_join`` each one
    before reading it (adapters do, so one file linked out quarantines one record, not the source).
    A folder linked out that ``**`` reaches, or that a ``*`` component would list, stops the walk
    instead: it holds an unknown number of records, none of which may be read, and a mirror spread
    over folders should say so, not lose them uncounted.

    >>> safe_glob(Path("/data/mimic"), "../*")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    UnsafePathError: glob pattern '../*' climbs out of the dataset root with '..'
    """
    parts = _relative_parts(pattern, "glob pattern")
    root_resolved = Path(root if root is not None else base).resolve()
    matchers = [None if part == "**" else re.compile(fnmatch.translate(part.casefold())).match for part in parts]

    def select(folder: Path, index: int) -> Iterator[Path]:
        if index == len(matchers):
            yield folder
        elif matchers[index] is None:
            for below in _folders_below(folder, Path(base), root_resolved):
                yield from select(below, index + 1)
        else:
            last = index == len(matchers) - 1
            for entry in _entries(folder):
                if matchers[index](entry.name.casefold()) and (last or _is_dir(entry)):
                    if not last and entry.is_symlink() and not _real_folder_inside(entry, root_resolved):
                        # never listed: the rest of the pattern in plain names is that one path (the
                        # caller's safe_join quarantines it); with wildcards, an unknown number, as '**'
                        rest = parts[index + 1:]
                        if any(part == "**" or glob_magic(part) for part in rest):
                            _linked_folder_inside(Path(entry.path), Path(base), root_resolved)
                        yield Path(entry.path).joinpath(*rest)
                        continue
                    yield from select(Path(entry.path), index + 1)

    matches = sorted(set(select(Path(base), 0)))  # '**/**' reaches a path twice
    for match in matches if refuse_outside else ():
        _check_inside(root_resolved, Path(base), match)
    return matches


def _entries(folder: Path) -> list[os.DirEntry]:
    """``folder``'s entries by name; none when it cannot be listed (as ``Path.glob`` skips it)."""
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop or one the caller may not follow: not a folder to descend
        return False


def glob_magic(part: str) -> bool:
    """Whether a pattern component matches by wildcard, not as a plain name."""
    return any(mark in part for mark in "*?[")


def _real_folder_inside(entry: os.DirEntry, root_resolved: Path) -> bool:
    return _inside(root_resolved, Path(os.path.realpath(entry.path)))


def _linked_folder_inside(folder: Path, base: Path, root_resolved: Path) -> None:
    """UnsafePathError naming ``folder`` (below ``base``) when its real location is outside the root."""
    real = Path(os.path.realpath(folder))
    if not _inside(root_resolved, real):
        raise UnsafePathError(
            f"{folder.relative_to(base).as_posix()} is a symlinked folder leading outside the dataset root "
            f"{root_resolved} (to {real}); copy or bind-mount that folder inside the root to read it")


def _folders_below(start: Path, base: Path, root_resolved: Path) -> Iterator[Path]:
    """``start`` and every folder below it, through symlinked folders inside ``root_resolved``,
    each real folder once (by device and inode), in name order (depth first, a folder before the
    folders in it).

    Walked with a stack of its own, not by recursion: a tree thousands of folders deep (a hostile
    archive) raised RecursionError, naming nothing. A folder that cannot be looked at (its path
    longer than the system's limit, deeper than a path can name) is skipped as one that cannot be
    listed: nothing in it can be opened by its path either."""
    seen: set[tuple[int, int]] = set()
    pending: list[tuple[Path, bool, int]] = [(start, True, 0)]  # (folder, reached through a link, depth)
    while pending:
        folder, linked, depth = pending.pop()
        if depth > MAX_FOLDER_DEPTH:
            below = folder.relative_to(base).as_posix()
            raise UnsafePathError(f"{below[:80]}{'...' if len(below) > 80 else ''} is more than {MAX_FOLDER_DEPTH} "
                                  f"folders deep below {base}: no dataset's layout is; is a folder linked "
                                  "into itself, or an archive unpacked wrongly?")
        if linked:  # a link (or the start, reached through one) leading out is never listed
            _linked_folder_inside(folder, base, root_resolved)
        try:
            info = folder.stat()
        except OSError as error:  # no such folder (as Path.glob), or a path too long to look at
            if isinstance(error, (FileNotFoundError, NotADirectoryError)) or error.errno == errno.ENAMETOOLONG:
                continue
            raise
        if (info.st_dev, info.st_ino) in seen:  # a second link to it, or a link back to an ancestor
            continue
        seen.add((info.st_dev, info.st_ino))
        yield folder
        below = [(Path(entry.path), entry.is_symlink(), depth + 1) for entry in _entries(folder) if _is_dir(entry)]
        pending.extend(reversed(below))  # the first by name on top

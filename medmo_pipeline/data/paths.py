"""Joining paths read from data files onto a dataset root, without ever leaving that root.

Dataset annotations name their images by relative path; a hostile or broken file could name
``../../etc/passwd``, an absolute path, or a symlink pointing out of the mirror. ``safe_join`` is the
only way adapters turn such a name into a ``Path``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A relative path from a data file that would resolve outside its dataset root."""


def safe_join(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refusing anything that could point outside ``root``.

    Rejected: empty names, NUL bytes, absolute paths (POSIX or Windows, drive letters included),
    any ``..`` component, and paths whose resolved target (following symlinks) is not inside the
    resolved ``root``. Backslashes count as separators, as in annotation files written on Windows.

    >>> safe_join(Path("/data/vqa_rad"), "images/synpic1.jpg").as_posix()
    '/data/vqa_rad/images/synpic1.jpg'
    """
    text = str(relative)
    if not text or "\x00" in text:
        raise UnsafePathError(f"path {text!r} is empty or contains a NUL byte")
    parts = PureWindowsPath(text).parts if "\\" in text else PurePosixPath(text).parts
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise UnsafePathError(f"path {text!r} is absolute; data files must use paths relative to the root")
    if ".." in parts:
        raise UnsafePathError(f"path {text!r} climbs out of the dataset root with '..'")
    root_resolved = Path(root).resolve()
    joined = root_resolved.joinpath(*parts)
    target = joined.resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePathError(f"path {text!r} resolves to {target}, outside the dataset root {root_resolved}")
    return joined

"""Images found by file name anywhere below a folder: MedTrinity-25M's unpacked image shards.

MedTrinity-25M's metadata (``25M_full/*.parquet``) names each image by a bare ``file_name``; the
images ship in ``25M_accessible/dataset_shard_N.tar.zst``, which users unpack into one folder
(``25M_accessible_unzipped/``), where an image sits several folders deep under names the metadata
does not give. ``ImageTree`` indexes such a folder once: per file a 64-bit key of its name and the
index of its folder, in two numpy arrays sorted by key (12 bytes a file: about 240 MB for 20M
files), plus the list of folders; memory grows with the files of the tree, never with the rows
looked up. A name is looked up with ``np.searchsorted`` and each candidate confirmed on disk, so a
key shared by two names (a 64-bit collision) never gives the wrong file. A name found in two
folders (two shards holding one file name) gives both paths: the caption adapter quarantines that
row (``image_ambiguous``, naming them), since which one is meant would be a guess.

The walk is the registry's safe walk (``safe_paths.safe_glob(tree, "**")``): folders linked
inside the dataset root are walked once each; a folder linked outside it stops the source (it
holds an unknown number of images, none of which may be read). A file that is a symlink is indexed
by its name, and reading it goes through ``safe_join`` as any image path does: one leading out of
the root is that row's ``unsafe_path``.

The key is Python's own string hash (``curation.keys``' choice): valid within one process, which
is where an index lives (``tree_index`` keeps the last one built, so a benchmark read file by file
walks the tree once).
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import numpy as np

from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.safe_paths import UnsafePathError, check_relative, safe_glob

from .records import SourceLayoutError, layout_path

CHUNK = 1 << 16  # keys gathered in a Python list before they become a numpy chunk
MAX_FOUND = 5  # files of one name confirmed on disk before ``find`` stops looking: it is ambiguous


class ImageTree:
    """The files below ``path`` by name (see the module doc). ``keys`` (int64, sorted) and
    ``folder_of`` (uint32, the index in ``folders`` of each key's folder, '' the tree itself)."""

    def __init__(self, path: Path, root: Path | None = None):
        self.path = Path(path)
        folders: list[str] = []
        key_chunks: list[np.ndarray] = []
        folder_chunks: list[np.ndarray] = []
        keys: list[int] = []
        owners: list[int] = []
        for folder in safe_glob(self.path, "**", root=root if root is not None else self.path):
            try:
                with os.scandir(folder) as listing:
                    names = [entry.name for entry in listing
                             if entry.is_symlink() or entry.is_file(follow_symlinks=False)]
            except OSError:  # a folder that cannot be listed: none of its images is found (as a glob skips it)
                continue
            if not names:
                continue
            relative = folder.relative_to(self.path).as_posix()
            folders.append("" if relative == "." else relative)
            keys.extend(map(hash, names))
            owners.extend([len(folders) - 1] * len(names))
            if len(keys) >= CHUNK:
                key_chunks.append(np.array(keys, dtype=np.int64))
                folder_chunks.append(np.array(owners, dtype=np.uint32))
                keys, owners = [], []
        key_chunks.append(np.array(keys, dtype=np.int64))
        folder_chunks.append(np.array(owners, dtype=np.uint32))
        all_keys = np.concatenate(key_chunks)
        all_folders = np.concatenate(folder_chunks)
        del key_chunks, folder_chunks
        order = np.argsort(all_keys, kind="stable")  # while sorting, about 30 bytes a file; 12 once built
        self.keys: np.ndarray = all_keys[order]
        del all_keys
        self.folder_of: np.ndarray = all_folders[order]
        del all_folders, order
        self.folders = folders

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """The bytes of the per-file arrays (the folder list aside)."""
        return self.keys.nbytes + self.folder_of.nbytes

    def find(self, name: str) -> list[str]:
        """The paths (relative to the tree, in folder order; at most ``MAX_FOUND`` + 1, the name then
        ambiguous whatever the rest) of the files named ``name``; a name with folders
        in it (``a/b.jpg``) matches the files of its last part whose path ends with it. Raises
        RowError (``malformed_record``) for a name that names no file, ``unsafe_path`` (through
        ``check_relative``) for one that is absolute or climbs with '..'."""
        check_relative(name)
        wanted = posixpath.normpath(name.replace("\\", "/")).strip("/")  # "./x.jpg" and "a//x.jpg" as written plainly
        base = wanted.rsplit("/", 1)[-1]
        if base in ("", "."):
            raise RowError("malformed_record", f"image name {name!r} names a folder, not a file")
        key = hash(base)
        start, stop = np.searchsorted(self.keys, key, "left"), np.searchsorted(self.keys, key, "right")
        found = []
        for index in np.unique(self.folder_of[start:stop]).tolist():  # two names of one key in a folder: once
            folder = self.folders[index]
            relative = f"{folder}/{base}" if folder else base
            if (relative == wanted or relative.endswith(f"/{wanted}")) and os.path.lexists(self.path / relative):
                found.append(relative)  # confirmed: a key collision with another name is no match
                if len(found) > MAX_FOUND:  # ambiguous already: a name in 200,000 folders cost 200,000 stats a row
                    break
        return found


_LAST: list[tuple[tuple, ImageTree]] = []


def tree_index(root: Path, folder: str) -> ImageTree:
    """The index of ``folder`` under the dataset ``root`` (SourceLayoutError when it is missing, or
    holds a folder linked outside the root),
    built once and kept until another tree (or the same one changed at its top) is asked for."""
    path = layout_path(root, folder, folder=True)
    info = path.stat()
    key = (str(path), info.st_dev, info.st_ino, info.st_mtime_ns)
    if _LAST and _LAST[0][0] == key:
        return _LAST[0][1]
    _LAST.clear()  # the old index goes before the new one is built: one held at a time
    try:
        index = ImageTree(path, Path(root).resolve())
    except UnsafePathError as error:  # a folder linked out of the root: the source's problem, not a row's
        raise SourceLayoutError(f"{folder}/: {error}") from None
    _LAST.append((key, index))
    return index


def forget() -> None:
    """Drop the index ``tree_index`` keeps."""
    _LAST.clear()

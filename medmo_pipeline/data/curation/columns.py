"""Arrow column helpers shared by the batch checks (``batch``) and the row keys (``keys``).

Each settles a question for a whole column at once, usually from its buffers without a kernel call:
the batch checks make dozens of calls per batch, and a kernel call costs more than its work there.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medmo_pipeline.data.characters import ASCII_STRIPPED, CONTROL_CHARACTERS

UNIT, RECORD = "\x1f", "\x1e"  # separators of joined texts


def as_array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array (without the copy ``combine_chunks`` makes of a single chunk)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def list_offsets(lists: pa.ListArray) -> np.ndarray:
    """The list offsets into ``lists.flatten()``, from 0 (a sliced array's start elsewhere)."""
    offsets = lists.offsets.to_numpy()
    return offsets - offsets[0] if offsets[0] else offsets


def regroup(lists: pa.ListArray, values: pa.Array) -> pa.ListArray:
    """``values`` (one per element of ``lists.flatten()``) grouped into lists as ``lists`` is; a null
    list becomes an empty one."""
    return pa.ListArray.from_arrays(pa.array(list_offsets(lists), pa.int32()), values)

CONTROL_BYTES = np.array([bool(CONTROL_CHARACTERS.match(chr(byte))) for byte in range(256)])  # ASCII ones
CONTROL_BYTES[128:] = False  # a UTF-8 byte above 127 is no character by itself (non-ASCII rows: check_row)

def trim(strings: pa.Array) -> pa.Array:
    # What check_row strips from ASCII text: Arrow trims exactly these, so the two paths agree.
    return pc.utf8_trim(strings, characters=ASCII_STRIPPED)


def or_default(values: pa.Array, default) -> pa.Array:
    """``values`` with nulls replaced by ``default`` (no kernel call when there is no null: the
    batch checks make dozens of calls per batch, each costing more than its work)."""
    return pc.fill_null(values, default) if values.null_count else values


def true_mask(mask) -> np.ndarray:
    """A boolean Arrow array as numpy, null counting as False."""
    return or_default(mask, False).to_numpy(zero_copy_only=False)


def non_empty(strings: pa.Array) -> np.ndarray:
    """Per string: present and not empty, read off the offsets (no kernel call: this runs per batch
    for a few columns, and each call costs more than the work)."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[strings.offset:strings.offset + len(strings) + 1]
    filled = np.diff(offsets) > 0
    return filled & strings.is_valid().to_numpy(zero_copy_only=False) if strings.null_count else filled


def all_ascii_bytes(strings: pa.Array) -> bool:
    """Whether the character data under ``strings`` is all ASCII: one pass over the buffer, which
    settles the common case for the whole column (it may hold bytes outside a slice: then the
    per-row check decides)."""
    data = strings.buffers()[2]
    return data is None or data.size == 0 or int(np.frombuffer(data, np.uint8).max()) < 128


def holds_controls(strings: pa.Array) -> bool:
    """Whether the character data under ``strings`` (a text column) holds an ASCII control byte: one table look-up per byte, settling the usual batch (none) at once."""
    data = strings.buffers()[2]
    return data is not None and data.size > 0 and bool(CONTROL_BYTES[np.frombuffer(data, np.uint8)].any())


def holds_bytes(strings: pa.Array, wanted: np.ndarray) -> bool:
    """Whether the character data under ``strings`` holds any of the byte values ``wanted``."""
    data = strings.buffers()[2]
    if data is None or not data.size:
        return False
    values = np.frombuffer(data, np.uint8)
    return any(bool((values == byte).any()) for byte in wanted)


def ascii_mask(strings: pa.Array, *, null_ok: bool) -> np.ndarray:
    """Per row: the text is ASCII (a missing one counts as ``null_ok``)."""
    if all_ascii_bytes(strings) and (null_ok or not strings.null_count):
        return np.ones(len(strings), dtype=bool)
    return or_default(pc.string_is_ascii(strings), null_ok).to_numpy(zero_copy_only=False)


def ascii_lists_mask(texts: pa.Array, lists: pa.ListArray) -> np.ndarray:
    """Per row of ``lists``: each of its texts (``texts`` is ``lists`` flattened) is there and ASCII."""
    ok = np.ones(len(lists), dtype=bool)
    if not (all_ascii_bytes(texts) and not texts.null_count):
        bad = ~true_mask(pc.string_is_ascii(texts))
        ok[pc.list_parent_indices(lists).to_numpy()[bad]] = False
    return ok


def members(strings: pa.Array, *sets: Iterable[str]) -> list[np.ndarray]:
    """Per row, for each of ``sets``: the text is in it. Decided once per distinct text."""
    encoded = pc.dictionary_encode(strings)
    names = encoded.dictionary.to_pylist()
    codes = or_default(encoded.indices, len(names)).to_numpy()  # a null points past the names
    return [np.array([name in wanted for name in names] + [False])[codes] for wanted in sets]


"""Batch checks: the row rules (``rules.check_row``) applied to a whole batch of rows at once.

``check_row`` costs more per row than writing the row does, most of it Python overhead on fields
that are almost always fine. ``check_batch`` checks a batch of rows together: per row in Python
only what needs the Python objects (plain types, boxes); per image one sha256 and, for PNGs, the
chunk walk, CRCs and inflate check of ``png_batch.check_pngs`` (numpy over the batch's bytes, then
one task of C calls per image: ``png_batch.hashed_pngs``, on worker processes for a large batch:
``image_check_workers``); the text fields column by column with Arrow kernels on a table converted
once (the conversion the shard needs anyway). Any row it is not sure about (non-ASCII text, whose NFC
form Arrow does not compute like ``unicodedata``; a value of an unexpected type; any failed check)
goes through ``check_row``, which decides and gives the reason. The rows that pass are exactly the
rows ``check_row`` passes, normalised identically (tests compare both paths row by row, fuzz them
against each other, and compare shard bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medmo_pipeline.data import image_check_workers
from medmo_pipeline.data.curation.columns import (
    RECORD,
    UNIT,
    as_array,
    ascii_lists_mask,
    ascii_mask,
    holds_bytes,
    holds_controls,
    list_offsets,
    members,
    non_empty,
    or_default,
    regroup,
    trim,
    true_mask,
)
from medmo_pipeline.data.curation.rules import (
    CONTROL_CHARACTERS,
    TASKS_WITH_ANSWER,
    CurationLimits,
    ImageChecker,
    Rejected,
    check_choices,
    check_row,
    clipped_boxes,
)
from medmo_pipeline.data.image_check_workers import PendingChecks
from medmo_pipeline.data.images import PNG_SIGNATURE, content_format, extension_contradicts
from medmo_pipeline.data.outcomes import out_of_memory_detail
from medmo_pipeline.schema.rows import (
    BOX_TYPE,
    IMAGE_TYPE,
    MESSAGE_TYPE,
    SAMPLE_SCHEMA,
    SPLITS,
    TASKS,
    TASKS_WITH_IMAGES,
)

BATCH_ROWS = 2000
FIRST_BATCH_ROWS = 512  # a source's first batch: its images' checks start while the next is read
BATCH_BYTES = 64 << 20  # about this much image data per batch: large images make smaller batches
# The text fields the batch path converts to Arrow; images and boxes are built by the per-row pass.
_TEXT_SCHEMA = pa.schema([SAMPLE_SCHEMA.field(name) for name in
                          ("id", "split", "task", "modality", "messages", "answer", "choices", "license")])
_SEPARATORS = np.array([ord(UNIT), ord(RECORD)], dtype=np.uint8)
_NO_BOXES: list = []  # shared by the rows without boxes (never changed: fewer objects for the GC to count)


@dataclass
class CheckedBatch:
    """The outcome of ``check_batch``: ``table`` holds the accepted rows, normalised, in input order;
    ``outcomes[i]`` is input row i's row in ``table`` or why it was rejected; ``clipped[j]`` counts
    the clipped boxes of table row j."""

    table: pa.Table
    outcomes: list[int | Rejected]
    clipped: list[int]


@dataclass
class Candidates:
    """The first part of ``check_batch`` (``candidates``): rows that passed the per-row part of the batch checks, and what that part computed: per
    candidate, its image count, whether its images and boxes passed, its boxes (clipped); per image
    of all candidates, in order, the columns of the images field."""

    positions: list[int] = field(default_factory=list)  # in the batch
    image_counts: list[int] = field(default_factory=list)
    images_ok: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    boxes: list[list[dict]] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    image_bytes: pa.Array = field(default_factory=lambda: pa.array([], pa.binary()))
    paths: list[str] = field(default_factory=list)
    path_array: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    hashes: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    text: TextChecks | None = None  # the candidates' text checks, when done before their images'


def check_batch(rows: list, *, source: str, images: ImageChecker, limits: CurationLimits,
                vectorised: bool = True, found: Candidates | None = None) -> CheckedBatch:
    """Check and normalise ``rows`` like ``check_row`` does each of them, batch-wise where possible.

    ``found`` is ``candidates(rows, ...)`` when the caller ran that part already (computed here
    otherwise). ``vectorised=False`` sends every row through ``check_row`` (the reference the tests
    compare to).
    """
    accepted: list[tuple[int, int]] = []  # (position in the batch, row of the concatenated tables)
    parts: list[pa.Table] = []
    clipped: list[int] = []
    if not vectorised:
        fast = Candidates()
    else:
        fast = found if found is not None else candidates(rows, images=images, limits=limits)
    if fast.positions:
        passed, table = _vector_checks([rows[i] for i in fast.positions], fast, source=source)
        if table is not None and len(fast.positions) == len(rows) and passed.all():  # the usual batch
            return CheckedBatch(table, list(range(len(rows))), fast.clipped)
        if table is not None:
            kept = np.flatnonzero(passed)
            parts.append(table if len(kept) == table.num_rows else table.filter(passed))
            accepted += [(fast.positions[j], k) for k, j in enumerate(kept)]
            clipped += [fast.clipped[j] for j in kept]
    outcomes: list = [None] * len(rows)
    done = {position for position, _ in accepted}
    slow_rows: list[dict] = []
    for position, raw in enumerate(rows):
        if position in done:
            continue
        try:
            row, row_clipped = check_row(raw, source=source, images=images, limits=limits)
        except Rejected as rejected:
            outcomes[position] = rejected
            continue
        except MemoryError as error:
            outcomes[position] = Rejected("out_of_memory", out_of_memory_detail(error))
            continue  # falling through kept the previous row again (or raised on the first)
        except Exception as error:  # noqa: BLE001 - a row must never stop the source: quarantine it, say why
            outcomes[position] = Rejected("malformed_row", f"{type(error).__name__}: {error}")
            continue
        accepted.append((position, len(clipped)))
        slow_rows.append(row)
        clipped.append(row_clipped)
    if slow_rows:
        parts.append(pa.Table.from_pylist(slow_rows, schema=SAMPLE_SCHEMA))
    table = pa.concat_tables(parts) if parts else SAMPLE_SCHEMA.empty_table()
    accepted.sort()  # input order
    order = [row for _, row in accepted]
    if order != list(range(len(order))):  # slow rows were appended after the fast ones
        table = table.take(order)
    for rank, (position, _) in enumerate(accepted):
        outcomes[position] = rank
    return CheckedBatch(table, outcomes, [clipped[row] for row in order])


@dataclass
class Gathered:
    """The first half of ``candidates``: the plain rows' fields, and their images' checks started
    (``image_check_workers.submit``), so the caller can go on while they run."""

    found: Candidates
    data: list[bytes]
    declared: list[tuple]
    boxes: list
    checks: PendingChecks | None  # None: no plain rows can be checked batch-wise (over 2 GiB of images)


def gathered(rows: list, *, limits: CurationLimits) -> Gathered:
    """The rows whose values are plain (see ``_plain_rows``), their images' checks started, and
    their text checked meanwhile (``text_checks``)."""
    found = Candidates()
    found.positions, found.image_counts, (data, found.paths, declared), raw_boxes = _plain_rows(rows)
    found.image_bytes, found.path_array = pa.array(data, pa.binary()), pa.array(found.paths, pa.string())
    if not isinstance(found.image_bytes, pa.Array):  # over 2 GiB of images: check_row, row by row
        return Gathered(Candidates(), [], [], [], None)
    checks = image_check_workers.submit(found.image_bytes, limits.image)
    # while the workers check the images (the last batch of a source has nothing else to overlap)
    found.text = text_checks(rows if len(found.positions) == len(rows) else [rows[i] for i in found.positions],
                             found.image_counts)
    return Gathered(found, data, declared, raw_boxes, checks)


def next_batch_rows(started: Gathered | None, rows: int, most: int) -> int:
    """How many input rows the next batch takes: ``most``, or fewer so that it holds about
    ``BATCH_BYTES`` of images at the image bytes per row of the batch just gathered (``rows`` rows)."""
    held = len(started.found.image_bytes.buffers()[2] or b"") if started is not None else 0
    if not held:
        return most
    return max(1, min(most, BATCH_BYTES * rows // held))


def up_to_shard_end(size: int, left: int) -> int:
    """A batch of ``size`` rows cut to end where the shard being filled ends (``left`` rows on), so
    that a shard is one batch's rows and is written without being copied into one piece first;
    not cut shorter than ``FIRST_BATCH_ROWS`` (a small batch costs more per row than the copy)."""
    return left if left < size and left >= FIRST_BATCH_ROWS else size


def candidates(rows: list, *, images: ImageChecker, limits: CurationLimits,
               started: Gathered | None = None) -> Candidates:
    """The per-row and per-image part of ``check_batch``: the rows whose values are plain (see
    ``_plain_rows``), then their images all together (hashed, checked, pixel streams inflated, on
    worker processes for a large batch), then their boxes. ``started`` is ``gathered(rows, ...)``
    when the caller ran that part already."""
    started = started if started is not None else gathered(rows, limits=limits)
    found = started.found
    if started.checks is None:
        return found
    images_ok = _check_images(found, started.checks, started.data, started.declared, images, limits)
    found.images_ok = np.ones(len(found.positions), dtype=bool)
    found.images_ok[np.repeat(np.arange(len(found.positions)), found.image_counts)[~images_ok]] = False
    found.boxes, found.clipped = started.boxes, [0] * len(started.boxes)
    if any(started.boxes):
        _check_boxes(found, limits)
    return found


def _plain_rows(rows: list) -> tuple[list[int], list[int], list[list], list]:
    """(positions, image counts, plain images (see ``_plain_image``) as columns, boxes) of the rows that hold
    plain values where Arrow would convert silently (a tuple for a dict, say); check_row looks at
    the others. This runs for every row of the corpus: ``_all_plain`` settles the usual batch, and
    ``_plain_rows_one_by_one`` finds the rows that are not plain."""
    usual = _all_plain(rows)
    return usual if usual is not None else _plain_rows_one_by_one(rows)


def _plain_rows_one_by_one(rows: list) -> tuple[list[int], list[int], list[list], list]:
    """``_plain_rows``, one row at a time (no call in the loop but per image)."""
    positions, image_counts, picked, raw_boxes = [], [], [], []
    for position, row in enumerate(rows):
        if type(row) is not dict:
            continue
        messages, entries, choices, boxes = row.get("messages"), row.get("images"), row.get("choices"), \
            row.get("boxes")
        if (type(messages) is not list or not _list_or_none(entries) or not _list_or_none(boxes)
                or not _list_or_none(choices)):
            continue  # a numpy array, pandas' NA...: check_row decides (its truth value may even raise)
        entries, boxes = entries or [], boxes or _NO_BOXES
        for message in messages:
            if type(message) is not dict:
                break
        else:
            plain = [_plain_image(entry) for entry in entries]
            if None not in plain:
                positions.append(position)
                image_counts.append(len(plain))
                picked += plain
                raw_boxes.append(boxes)
    return positions, image_counts, _columns(picked, 3), raw_boxes


def _all_plain(rows: list) -> tuple[list[int], list[int], list[list], list] | None:
    """``_plain_rows`` of a batch whose rows are all plain (and whose images all have a path),
    from one pass per field with the type checks done over whole columns; None for any other batch."""
    messages = [row.get("messages") for row in rows] if _types(rows) == {dict} else None
    if messages is None:
        return None
    entries, boxes = [row.get("images") for row in rows], [row.get("boxes") for row in rows]
    entry_types, box_types = _types(entries), _types(boxes)
    if (_types(messages) != {list} or not entry_types <= _LIST_OR_NONE or not box_types <= _LIST_OR_NONE
            or not _types(row.get("choices") for row in rows) <= _LIST_OR_NONE
            or not _types(chain.from_iterable(messages)) <= {dict}):
        return None
    if type(None) in entry_types:
        entries = [entry or [] for entry in entries]
    if type(None) in box_types:
        boxes = [box or _NO_BOXES for box in boxes]
    images = list(chain.from_iterable(entries))
    if not _types(images) <= {dict}:
        return None
    data, paths = [image.get("bytes") for image in images], [image.get("path") for image in images]
    if not _types(data) <= {bytes} or not _types(paths) <= {str} or not _plain_paths(paths):
        return None
    declared = [(image.get("width"), image.get("height")) for image in images]
    sizes = _types(chain.from_iterable(declared))
    if not sizes <= _NUMBER_OR_NONE:
        return None
    if type(None) in sizes:
        declared = [(width or 0, height or 0) for width, height in declared]
    return list(range(len(rows))), list(map(len, entries)), [data, list(map(str.strip, paths)), declared], boxes


def _types(values) -> set[type]:
    return set(map(type, values))


_LIST_OR_NONE = {list, type(None)}
_NUMBER_OR_NONE = {int, float, type(None)}  # a declared size; anything else (pandas' NA...): check_row


def _list_or_none(value) -> bool:
    return value is None or type(value) is list


def _plain_paths(paths: Sequence[str]) -> bool:
    """Every path ASCII with no control code (tab and line breaks included): check_row decides the
    others (it quarantines a control code, and strips only space and line breaks). Whole lists at
    once: this runs for every image of the corpus."""
    return all(map(str.isascii, paths)) and all(map(str.isprintable, paths))


def _check_images(found: Candidates, checks: PendingChecks, data: list[bytes], declared: list[tuple],
                  images: ImageChecker, limits: CurationLimits) -> np.ndarray:
    """Which images pass ``_image``'s checks; sets their sha256, width and height in ``found``.
    One sha256 each and ``check_pngs`` for the PNGs (``hashed_pngs``, run by ``checks``),
    ``ImageChecker`` for the rest (which takes what the workers found, when they inspected them)."""
    found.hashes, png, found.widths, found.heights, inspected = checks.result()  # one hash each
    ok, formats = png.copy(), ["PNG"] * len(data)
    for index in np.flatnonzero(~png).tolist():  # other formats, and what check_pngs left open
        result = images.inspect(data[index], found.hashes[index], inspected.get(index))
        if type(result) is tuple:
            ok[index] = True
            found.widths[index], found.heights[index], formats[index] = result
    found.sizes = list(zip(found.widths.tolist(), found.heights.tolist()))
    if list(declared) != found.sizes:  # not every size declared right (one comparison settles the usual case)
        ok &= np.array([size in ((0, 0), real) for size, real in zip(declared, found.sizes)], dtype=bool)
    if limits.check_extension:  # a PNG named .png is fine; the other names are parsed
        named = png & pc.ends_with(found.path_array, ".png").to_numpy(zero_copy_only=False)
        for index in np.flatnonzero(ok & ~named).tolist():
            ok[index] = not extension_contradicts(found.paths[index], formats[index])
    return ok


def _check_boxes(found: Candidates, limits: CurationLimits) -> None:
    """``clipped_boxes`` on the candidates with boxes and good images: their boxes clipped, or the row
    marked for check_row."""
    first = np.concatenate([[0], np.cumsum(found.image_counts)[:-1]]).astype(int).tolist()
    for candidate, boxes in enumerate(found.boxes):
        if not boxes:
            continue
        found.boxes[candidate] = []  # unless they pass: raw boxes may not even convert to Arrow
        if found.images_ok[candidate]:
            size = found.sizes[first[candidate]] if found.image_counts[candidate] else None
            try:
                found.boxes[candidate], found.clipped[candidate] = clipped_boxes(boxes, size, limits)
            except Exception:  # noqa: BLE001 - check_row decides (and says why)
                found.images_ok[candidate] = False


def _plain_image(entry) -> tuple[bytes, str, tuple] | None:
    """(bytes, stripped path, declared (width, height)) of an image entry whose values are plain
    (bytes, an ASCII path or none); None for anything else: check_row looks at it."""
    if type(entry) is not dict:
        return None
    data, path, width, height = entry.get("bytes"), entry.get("path"), entry.get("width"), entry.get("height")
    if type(data) is not bytes or type(width) not in _NUMBER_OR_NONE or type(height) not in _NUMBER_OR_NONE:
        return None
    if path is None:
        path = ""
    elif type(path) is str and _plain_paths((path,)):
        path = path.strip()
    else:
        return None
    return data, path, (width or 0, height or 0)


@dataclass
class TextChecks:
    """The text part of ``_vector_checks``, which needs no image: which rows pass the text checks
    (``ok``), and the text fields normalised, as Arrow arrays (``fields``: the SAMPLE_SCHEMA
    columns but images and boxes, the ids not yet prefixed). None stands for a batch whose text
    does not even convert."""

    ok: np.ndarray
    fields: dict[str, pa.Array]


def text_checks(rows: list[dict], image_counts: list[int]) -> TextChecks | None:
    """The text checks of ``check_row`` column by column, for rows with ``image_counts`` images
    each: computed while the rows' images are checked (see ``gathered``)."""
    try:
        raw = pa.Table.from_pylist(rows, schema=_TEXT_SCHEMA)
    except Exception:  # noqa: BLE001 - a value Arrow cannot take (an int for a string, a lone surrogate...)
        return None
    column = {name: as_array(raw.column(name)) for name in _TEXT_SCHEMA.names}
    messages, choices = column["messages"], column["choices"]
    raw_roles, raw_contents = (pc.struct_field(messages.flatten(), name) for name in ("role", "content"))
    raw_choices = choices.flatten()

    # Every text ASCII (valid UTF-8, NFC already) and present where check_row needs it; None is
    # allowed where clean_text makes it "".
    ok = ascii_mask(column["id"], null_ok=False) & ascii_mask(column["task"], null_ok=False)
    for name in ("split", "modality", "answer", "license"):
        ok &= ascii_mask(column[name], null_ok=True)
    for texts, lists in ((raw_roles, messages), (raw_contents, messages), (raw_choices, choices)):
        ok &= ascii_lists_mask(texts, lists)

    ident, task, roles, contents, options = map(trim, (column["id"], column["task"], raw_roles, raw_contents,
                                                         raw_choices))
    split = pc.if_else(or_default(pc.equal(column["split"], ""), True), "train", trim(column["split"]))
    answer = trim(or_default(column["answer"], ""))
    known_task, needs_answer, needs_image = members(task, TASKS, TASKS_WITH_ANSWER, TASKS_WITH_IMAGES)
    ok &= non_empty(ident) & known_task & members(split, SPLITS)[0]
    plain_texts = [column[name] for name in ("id", "split", "task", "modality", "answer", "license")]
    if any(holds_controls(texts) for texts in (*plain_texts, raw_roles, raw_contents, raw_choices)):
        for texts in (ident, task, split, answer, trim(or_default(column["modality"], "")), trim(or_default(column["license"], ""))):
            ok &= ~true_mask(pc.match_substring_regex(texts, CONTROL_CHARACTERS.pattern))
        for texts, lists in ((roles, messages), (contents, messages), (options, choices)):
            flagged = true_mask(pc.match_substring_regex(texts, CONTROL_CHARACTERS.pattern))
            ok[pc.list_parent_indices(lists).to_numpy()[flagged]] = False
    ok &= _turns_ok(messages, roles, contents)
    ok &= ~needs_answer | non_empty(answer)
    ok &= ~needs_image | (np.asarray(image_counts, dtype=np.int64) > 0)
    options = regroup(choices, options)
    # rows whose images will fail are asked too: ANDed with the image checks, the same rows pass
    ok &= _choices_ok(answer, options, ok)
    modality = trim(or_default(column["modality"], ""))
    return TextChecks(ok, {
        "id": ident,
        "split": split,
        "task": task,
        "modality": pc.if_else(pc.equal(modality, ""), "other", modality),
        "messages": regroup(messages, pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE_TYPE))),
        "answer": answer,
        "choices": options,
        "license": trim(or_default(column["license"], "")),
    })


def _vector_checks(rows: list[dict], found: Candidates, *, source: str) -> tuple[np.ndarray, pa.Table | None]:
    """Which candidates pass the text checks (``found.text``, computed here when the caller did not)
    and the image checks, and all of them normalised as a SAMPLE_SCHEMA table (None when the batch
    does not even convert: check_row then)."""
    text = found.text if found.text is not None else text_checks(rows, found.image_counts)
    if text is None:
        return np.zeros(len(rows), dtype=bool), None
    ok = text.ok & found.images_ok
    ident, prefix = text.fields["id"], f"{source}:"
    prefixed = pc.starts_with(ident, prefix)
    if not pc.all(prefixed).as_py():
        ident = pc.if_else(prefixed, ident, pc.binary_join_element_wise(prefix, ident, ""))
    images = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(found.image_counts)]), pa.int32()),
        pa.StructArray.from_arrays(
            [found.image_bytes, found.path_array, pa.array(found.widths, pa.int32()),
             pa.array(found.heights, pa.int32()), pa.array(found.hashes, pa.string())], fields=list(IMAGE_TYPE)))
    fields = {**text.fields, "id": ident, "source": pa.repeat(pa.scalar(source, pa.string()), len(rows)),
              "images": images,
              "boxes": pa.array(found.boxes, pa.list_(BOX_TYPE)) if any(found.boxes) else _no_boxes(len(rows))}
    return ok, pa.Table.from_arrays([fields[name] for name in SAMPLE_SCHEMA.names], schema=SAMPLE_SCHEMA)


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Tuples of ``width`` values -> ``width`` columns (empty ones when there are no rows)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _no_boxes(rows: int) -> pa.ListArray:
    """``rows`` empty box lists (most rows have none: cheaper than converting their empty lists)."""
    return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, dtype=np.int32)), pa.array([], BOX_TYPE))



def _turns_ok(messages: pa.ListArray, roles: pa.Array, contents: pa.Array) -> np.ndarray:
    """At least two turns, the first a non-empty user turn, the last a non-empty assistant turn."""
    offsets = list_offsets(messages)
    ok = np.diff(offsets) >= 2
    if not len(roles):
        return ok
    first, last = np.minimum(offsets[:-1], len(roles) - 1), np.maximum(offsets[1:] - 1, 0)  # valid where ok
    user, assistant = true_mask(pc.equal(roles, "user")), true_mask(pc.equal(roles, "assistant"))
    said = non_empty(contents)
    return ok & user[first] & assistant[last] & said[first] & said[last]


def _choices_ok(answer: pa.Array, options: pa.ListArray, candidates: np.ndarray) -> np.ndarray:
    """``check_choices`` itself, run once per distinct (answer, options) pair among the rows that
    are still ``candidates`` (VQA sets repeat a handful of them); rows without options pass."""
    ok = np.diff(list_offsets(options)) == 0  # no options
    asked = np.flatnonzero(~ok & candidates)
    if not len(asked):
        return ok
    # answer + options joined identify the pair, unless a text holds a separator: check_row then
    pairs = pc.binary_join_element_wise(answer, pc.binary_join(options, UNIT), RECORD)
    if holds_bytes(answer, _SEPARATORS) or holds_bytes(options.flatten(), _SEPARATORS):
        separators = pc.count_substring_regex(pairs, f"[{UNIT}{RECORD}]").to_numpy(zero_copy_only=False)
        asked = asked[separators[asked] == options.value_lengths().to_numpy(zero_copy_only=False)[asked]]
    codes = or_default(pc.dictionary_encode(pairs).indices, 0).to_numpy()  # a null pair is never asked
    distinct, first = np.unique(codes[asked], return_index=True)
    passed = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype=bool)
    for code, row in zip(distinct, asked[first]):
        try:
            check_choices(answer[int(row)].as_py(), options[int(row)].as_py())
        except Rejected:
            continue
        passed[code] = True
    ok[asked] = passed[codes[asked]]
    return ok


_PNG_MAGIC = pa.scalar(PNG_SIGNATURE, pa.binary())


def extension_mismatches(table: pa.Table) -> int:
    """How many images of ``table`` have a name promising another format than their content (read
    from the first bytes), whichever path checked them."""
    images = as_array(table.column("images")).flatten()
    if not len(images):
        return 0
    paths, heads = pc.struct_field(images, "path"), pc.binary_slice(pc.struct_field(images, "bytes"), 0, 12)
    # The usual image, a PNG named .png, contradicts nothing: only the others are looked at one by one.
    usual = true_mask(pc.and_(pc.ends_with(paths, ".png"),
                              pc.equal(pc.binary_slice(heads, 0, len(PNG_SIGNATURE)), _PNG_MAGIC)))
    others = pa.array(np.flatnonzero(~usual))
    if not len(others):
        return 0
    paths, heads = pc.take(paths, others).to_pylist(), pc.take(heads, others).to_pylist()
    count = 0
    for path, head in zip(paths, heads):
        count += extension_contradicts(path, content_format(head))
    return count


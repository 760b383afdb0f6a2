"""The row rules: what a kept row must be, stated one row at a time (``check_row``).

Text fields must be valid UTF-8 (bytes are decoded, lone surrogates rejected), hold no control
characters but tab and line breaks, and are NFC-normalised and stripped; the id becomes
``source:local_id``; task, split and turn order follow the sample contract; the assistant reply is
non-empty, and so is ``answer`` for vqa / text_qa / grounding; choices, when present, contain the
answer (as option text or option letter). Images: present, decodable to what the model sees (PNG:
every chunk's CRC, bounded text chunks, the pixel stream inflated to exactly its declared size, see
``images.verify_png``; other formats: a full decode), within ``ImageLimits`` (the pixel count is
checked from the header first: decompression-bomb guard), and a declared size equal to the real
one; sha256, width and height are recomputed. The content decides the format: a name promising
another one is counted (``extension_mismatches``) unless ``check_extension`` quarantines it.
Boxes (pixels of the first image): finite, positive width and height, and inside the image after
the clipping rule: a box overlapping the image by more than ``min_box_overlap`` of its own area is
clipped to the image; otherwise the row is quarantined (``schema.boxes.clip_box``, the rule the
box-list adapters apply to each box row too).

A row failing a rule raises ``Rejected`` with one reason from ``REASONS``. The batch checks
(``batch``) apply the same rules to many rows at once and leave to ``check_row`` every row they are
not sure about.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import regex

from medmo_pipeline.data.characters import ASCII_STRIPPED, CONTROL_CHARACTERS, INVISIBLE, stripped
from medmo_pipeline.data.images import ImageError, ImageLimits, InspectCache, extension_contradicts
from medmo_pipeline.data.outcomes import ROW_REASONS
from medmo_pipeline.schema.boxes import MIN_BOX_OVERLAP, BoxRefused, clip_box
from medmo_pipeline.schema.rows import SPLITS, TASKS, TASKS_WITH_IMAGES

TASKS_WITH_ANSWER = ("vqa", "text_qa", "grounding")
LETTERS = "ABCDEFGHIJ"

REASONS = {
    "malformed_row": "not a mapping, or a field of the wrong type",
    "schema": "a required field is missing, or task / split / turn order is not the contract's",
    "invalid_utf8": "a text field is not valid UTF-8",
    "control_characters": "a text field holds a control character (other than tab and line breaks)",
    "duplicate_id": "an earlier kept row has the same id",
    "missing_question": "the user turn is empty",
    "missing_answer": "the assistant reply (or the gold answer of a vqa/text_qa/grounding row) is empty",
    "choices_inconsistent": "the answer is neither one of the choices nor a letter within them",
    "image_missing": "no image bytes (file not found), or an image task without an image",
    "image_empty": "a zero-byte image",
    "image_truncated": "the image data ends early",
    "image_undecodable": "not an image in one of the formats read (image_limits.IMAGE_FORMATS), or one its decoder rejects",
    "image_too_large": "more pixels than ImageLimits.max_pixels (checked from the header)",
    "image_too_costly": "a decode costing far more than its pixels: a JPEG of more scans than ImageLimits.max_jpeg_scans, "
                        "a PNG, JPEG, TIFF or DICOM whose chunks, segments, tag values or elements outnumber "
                        "ImageLimits.max_chunks",
    "image_too_small": "a side shorter than ImageLimits.min_side",
    "image_aspect_ratio": "more elongated than ImageLimits.max_aspect_ratio",
    "image_size_mismatch": "declared width/height differ from the decoded image",
    "extension_mismatch": "the file name's extension promises another format than its content",
    "box_nan": "a box coordinate is NaN or infinite",
    "box_degenerate": "a box with zero or negative width or height",
    "box_outside": "a box overlapping the image by no more than min_box_overlap of its area",
    "box_without_image": "boxes on a row with no image",
    **{reason: text for reason, text in ROW_REASONS.items() if reason not in ("box_nan", "invalid_utf8")},
}


@dataclass(frozen=True)
class CurationLimits:
    image: ImageLimits = field(default_factory=ImageLimits)
    min_box_overlap: float = MIN_BOX_OVERLAP  # share of a box's area inside the image above which it is clipped
    # The content decides an image's format: a name promising another one is counted in the report
    # (``extension_mismatches``), not quarantined, unless this asks for that.
    check_extension: bool = False


class Rejected(ValueError):
    """A row that fails a check: ``reason`` is a key of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# ---- text ---------------------------------------------------------------------------------------

# Neither a word character nor a combining mark: Python's \w leaves marks out, and Arabic كَتَبَ and
# كُتُب ("he wrote", "books") became one question key
_NON_WORD = regex.compile(r"[^\w\p{M}]+")
_IMAGE_TOKEN = re.compile(r"<image>", re.IGNORECASE)
# What is stripped around a text and what counts as a control code come from ``characters``: the
# adapters strip record text by the same set, so a control code at a field's edge reaches these checks
_DELETE_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))


def clean_text(value, what: str) -> str:
    """Valid UTF-8 text, NFC-normalised and stripped (of zero-width characters too); raises
    Rejected('invalid_utf8')."""
    if type(value) is str and value.isascii():  # the common case: ASCII is valid UTF-8 and NFC already
        return _without_controls(value.strip(ASCII_STRIPPED), what)
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):  # the bytes-like values Arrow takes as text
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise Rejected("invalid_utf8", f"{what}: {error}") from None
    elif not isinstance(value, str):
        raise Rejected("malformed_row", f"{what} is {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates: bytes a reader kept by surrogateescape
        around = value[max(0, error.start - 20):error.end + 20]  # its repr shows each such byte as \udcXX
        raise Rejected("invalid_utf8", f"{what} holds bytes that are not UTF-8 (in {around!r}): a file name "
                                       "or record written in another encoding; rename or re-encode it as "
                                       "UTF-8") from None
    return _without_controls(stripped(unicodedata.normalize("NFC", value)), what)


def without_invisible(text: str) -> str:
    """``text`` with its invisible characters taken out: "ma\u00adlignant" is "malignant"."""
    return text if text.isascii() else text.translate(_DELETE_INVISIBLE)


def _without_controls(text: str, what: str) -> str:
    """``text`` unless it holds a control character (tab and line breaks are text; other C0, DEL and
    C1 codes are binary junk or a broken decode); raises Rejected('control_characters')."""
    if text.isprintable():  # the usual case, in C; tabs and line breaks are not printable: look closer
        return text
    found = CONTROL_CHARACTERS.search(text)
    if found:
        raise Rejected("control_characters", f"{what}: {found.group()!r} at character {found.start()}")
    return text


def normalise_question(text: str) -> str:
    """Case-, accent-form-, punctuation- and spacing-insensitive form of a question.

    >>> normalise_question("  Is there a <image> LESION?? ")
    'is there a lesion'
    """
    text = _IMAGE_TOKEN.sub(" ", unicodedata.normalize("NFKC", without_invisible(text))).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


# ---- row checks ---------------------------------------------------------------------------------

class ImageChecker(InspectCache):
    """``images.InspectCache`` (``inspect_image`` cached by sha256), raising ``Rejected`` when called."""

    def __call__(self, data: bytes, sha256: str) -> tuple[int, int, str]:
        result = self.inspect(data, sha256)
        if isinstance(result, ImageError):
            raise Rejected(result.reason, result.detail)
        return result


def check_row(row: dict, *, source: str, images: ImageChecker, limits: CurationLimits) -> tuple[dict, int]:
    """The normalised row and how many of its boxes were clipped; raises Rejected."""
    if not isinstance(row, dict):
        raise Rejected("malformed_row", f"row is {type(row).__name__}")
    if row.get("id") is None or row.get("task") is None or row.get("messages") is None:
        raise Rejected("schema", f"missing {[name for name in ('id', 'task', 'messages') if row.get(name) is None]}")
    local_id = clean_text(row["id"], "id")
    if not local_id:
        raise Rejected("schema", "empty id")
    task, split = clean_text(row["task"], "task"), clean_text(row.get("split") or "train", "split")
    if task not in TASKS or split not in SPLITS:
        raise Rejected("schema", f"task {task!r} / split {split!r} not in {TASKS} / {SPLITS}")
    messages = [_message(m, i) for i, m in enumerate(row["messages"])]
    if len(messages) < 2 or messages[0]["role"] != "user" or messages[-1]["role"] != "assistant":
        raise Rejected("schema", f"turns must go user ... assistant, got {[m['role'] for m in messages]}")
    if not messages[0]["content"]:
        raise Rejected("missing_question", "empty first user turn")
    if not messages[-1]["content"]:
        raise Rejected("missing_answer", "empty assistant reply")
    answer = clean_text(row.get("answer"), "answer")
    if task in TASKS_WITH_ANSWER and not answer:
        raise Rejected("missing_answer", f"task {task} needs a gold answer")
    choices = [clean_text(c, "choices") for c in row.get("choices") or []]
    if choices:
        check_choices(answer, choices)
    entries = [_image(entry, images, limits) for entry in row.get("images") or []]
    if task in TASKS_WITH_IMAGES and not entries:
        raise Rejected("image_missing", f"task {task} needs an image")
    boxes, clipped = clipped_boxes(row.get("boxes") or [], (entries[0]["width"], entries[0]["height"]) if entries else None,
                            limits)
    prefix = f"{source}:"
    return {
        "id": local_id if local_id.startswith(prefix) else prefix + local_id,
        "source": source,
        "split": split,
        "task": task,
        "modality": clean_text(row.get("modality"), "modality") or "other",
        "images": entries,
        "messages": messages,
        "answer": answer,
        "choices": choices,
        "boxes": boxes,
        "license": clean_text(row.get("license"), "license"),
    }, clipped


def _message(message: dict, index: int) -> dict:
    if not isinstance(message, dict):
        raise Rejected("malformed_row", f"message {index} is {type(message).__name__}")
    try:
        return {"role": clean_text(message.get("role"), "role"), "content": clean_text(message.get("content"), "content")}
    except Rejected as rejected:  # name the turn only on failure: formatting it per row costs
        raise Rejected(rejected.reason, f"messages[{index}].{rejected.detail}") from None


def check_choices(answer: str, choices: list[str]) -> None:
    folded = [c.casefold() for c in choices]
    if len(set(folded)) != len(folded):
        raise Rejected("choices_inconsistent", f"repeated options {choices}")
    letter_ok = len(answer) == 1 and 0 <= LETTERS.find(answer.upper()) < len(choices)
    if not (letter_ok or answer.casefold() in folded):
        raise Rejected("choices_inconsistent", f"answer {answer!r} not among {len(choices)} choices")


def _image(entry: dict, check: ImageChecker, limits: CurationLimits) -> dict:
    if not isinstance(entry, dict):
        raise Rejected("malformed_row", f"image entry is {type(entry).__name__}")
    path = clean_text(entry.get("path"), "image path")
    data = entry.get("bytes")
    if data is None:
        failure = entry.get("error")  # an adapter's conversion that failed (pixels.failed_entry)
        if isinstance(failure, ImageError):
            raise Rejected(failure.reason, f"{path}: {failure.detail}")
        raise Rejected("image_missing", f"no bytes for {path or 'an image'}")
    data = bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        width, height, fmt = check(data, sha256)
    except Rejected as rejected:  # name the file only on failure
        raise Rejected(rejected.reason, f"{path}: {rejected.detail}" if path else rejected.detail) from None
    if limits.check_extension and extension_contradicts(path, fmt):
        raise Rejected("extension_mismatch", f"{path} holds {fmt}")
    declared = (entry.get("width") or 0, entry.get("height") or 0)
    if declared != (0, 0) and declared != (width, height):
        raise Rejected("image_size_mismatch", f"{path}: declared {declared[0]}x{declared[1]}, is {width}x{height}")
    return {"bytes": data, "path": path, "width": width, "height": height, "sha256": sha256}


def clipped_boxes(boxes: list, image_size: tuple[int, int] | None, limits: CurationLimits) -> tuple[list[dict], int]:
    """Boxes checked against the first image's (width, height) and clipped to it (see the module doc)."""
    if not boxes:
        return [], 0
    if not image_size:
        raise Rejected("box_without_image", f"{len(boxes)} boxes")
    width, height = image_size
    out, clipped = [], 0
    for box in boxes:
        try:
            x1, y1, x2, y2 = (float(box[k]) for k in ("x1", "y1", "x2", "y2"))
        except (KeyError, TypeError, ValueError) as error:
            raise Rejected("malformed_row", f"box {box!r}: {error}") from None
        try:  # the rule adapters apply to each box row too (schema.boxes)
            cx1, cy1, cx2, cy2 = clip_box((x1, y1, x2, y2), width, height, limits.min_box_overlap)
        except BoxRefused as refused:
            raise Rejected(refused.reason, refused.detail) from None
        clipped += (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)
        out.append({"label": clean_text(box.get("label"), "box label"), "x1": cx1, "y1": cy1, "x2": cx2, "y2": cy2})
    return out, clipped


"""Box coordinates: the one place where pixels and Qwen3-VL's relative 0-1000 scale meet.

Sample rows store boxes in pixels of the original image (x1, y1, x2, y2; XYXY, no +1).
What the model reads and writes is Qwen3-VL's relative integer scale: 0 is the left/top edge
and 1000 the right/bottom edge, whatever size the processor resizes the image to. Because the
scale is relative, resizing never changes the numbers; only these two functions convert.
``clip_box`` says which pixel box a row may keep on its image: curation's rule, which the box-list
adapters apply to each box row as well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

QWEN_SCALE = 1000

Box = tuple[float, float, float, float]


def pixels_to_relative(box: Sequence[float], width: float, height: float) -> tuple[int, int, int, int]:
    """Pixel box of a (width x height) image -> integer box on the 0-1000 scale (clamped).

    >>> pixels_to_relative((32, 64, 96, 128), 128, 128)
    (250, 500, 750, 1000)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = (float(v) for v in box)
    scaled = (x1 / width, y1 / height, x2 / width, y2 / height)
    return tuple(min(QWEN_SCALE, max(0, round(v * QWEN_SCALE))) for v in scaled)  # type: ignore[return-value]


def relative_to_pixels(box: Sequence[float], width: float, height: float) -> Box:
    """Box on the 0-1000 scale -> pixel box of a (width x height) image.

    >>> relative_to_pixels((250, 500, 750, 1000), 128, 128)
    (32.0, 64.0, 96.0, 128.0)
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 * width / QWEN_SCALE, y1 * height / QWEN_SCALE, x2 * width / QWEN_SCALE, y2 * height / QWEN_SCALE)


def format_box_answer(label: str, boxes_relative: Iterable[Sequence[int]]) -> str:
    """The MedMO answer form: ``label <box>[[x1, y1, x2, y2], ...]</box>`` (0-1000 integers).

    >>> format_box_answer("lesion", [(250, 500, 750, 1000)])
    'lesion <box>[[250, 500, 750, 1000]]</box>'
    """
    inner = ", ".join("[" + ", ".join(str(int(v)) for v in b) + "]" for b in boxes_relative)
    return f"{label} <box>[{inner}]</box>"


REPLY_BOX_SCALES = ("relative_1000", "pixels")


def reply_box_to_pixels(box: Sequence[float], width: float, height: float, scale: str) -> Box:
    """A box as a data set's replies write it -> pixel box of the (width x height) original image.

    ``scale`` is the data set's declared scale: ``relative_1000`` (Qwen3-VL's) or ``pixels``. A box
    outside that scale's frame raises ValueError: the declared scale does not fit the data.

    >>> reply_box_to_pixels((250, 500, 750, 1000), 200, 100, "relative_1000")
    (50.0, 50.0, 150.0, 100.0)
    >>> reply_box_to_pixels((10, 20, 30, 40), 200, 100, "pixels")
    (10.0, 20.0, 30.0, 40.0)
    """
    if scale not in REPLY_BOX_SCALES:
        raise ValueError(f"unknown box scale {scale!r}; known: {list(REPLY_BOX_SCALES)}")
    x1, y1, x2, y2 = (float(v) for v in box)
    frame_width, frame_height = (QWEN_SCALE, QWEN_SCALE) if scale == "relative_1000" else (width, height)
    if min(x1, y1) < 0 or x2 > frame_width or y2 > frame_height:
        raise ValueError(f"box {list(box)} lies outside the {frame_width:g} x {frame_height:g} frame of scale "
                         f"{scale!r} (image {width:g} x {height:g}): is the declared box scale right?")
    return relative_to_pixels(box, width, height) if scale == "relative_1000" else (x1, y1, x2, y2)


# ---- what a kept box must be ----------------------------------------------------------------------
# The rule curation applies to every row's boxes (``curation.rules.clipped_boxes``); adapters apply
# it to each box row of a box list too, so a bad row is refused by itself and its siblings are kept.

MIN_BOX_OVERLAP = 0.5  # share of a box's area inside the image above which it is clipped, not refused


class BoxRefused(ValueError):
    """A box no row may keep; ``reason`` is ``box_nan``, ``box_degenerate`` or ``box_outside``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def checked_box(box: Sequence[float]) -> Box:
    """``box`` as floats if it is a box on any image: finite, of positive width and height; raises
    BoxRefused otherwise.

    >>> checked_box((1, 2, 3, 4))
    (1.0, 2.0, 3.0, 4.0)
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise BoxRefused("box_nan", f"{(x1, y1, x2, y2)}")
    if x2 <= x1 or y2 <= y1:
        raise BoxRefused("box_degenerate", f"{(x1, y1, x2, y2)}: width {x2 - x1}, height {y2 - y1}")
    return x1, y1, x2, y2


def clip_box(box: Sequence[float], width: float, height: float, min_overlap: float = MIN_BOX_OVERLAP) -> Box:
    """``box`` clipped to a (width x height) image: kept when more than ``min_overlap`` of its area
    lies inside the image; raises BoxRefused otherwise (and for a box ``checked_box`` refuses).

    >>> clip_box((-2, 0, 8, 10), 100, 100)
    (0.0, 0.0, 8.0, 10.0)
    """
    x1, y1, x2, y2 = checked_box(box)
    clipped = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if clipped != (x1, y1, x2, y2):
        inside = max(clipped[2] - clipped[0], 0.0) * max(clipped[3] - clipped[1], 0.0)
        if inside <= min_overlap * (x2 - x1) * (y2 - y1):
            raise BoxRefused("box_outside", f"{(x1, y1, x2, y2)} vs image {width}x{height}")
    return clipped

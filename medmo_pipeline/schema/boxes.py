"""Box coordinates: the one place where pixels and Qwen3-VL's relative 0-1000 scale meet.

Sample rows store boxes in pixels of the original image (x1, y1, x2, y2; XYXY, no +1).
What the model reads and writes is Qwen3-VL's relative integer scale: 0 is the left/top edge
and 1000 the right/bottom edge, whatever size the processor resizes the image to. Because the
scale is relative, resizing never changes the numbers; only these two functions convert.
"""

from __future__ import annotations

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

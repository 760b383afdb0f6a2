"""Numpy drawing primitives shared by the synthetic image sources, and PNG encoding.

Coordinates are continuous pixels: pixel (i, j) covers [j, j+1) x [i, i+1) and is sampled at its
centre, so an axis-aligned ellipse with centre (cx, cy) and semi-axes (a, b) paints exactly the
pixels inside the box (cx - a, cy - b, cx + a, cy + b). That box is what the rows store.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Fixed so that the same pixels always give the same bytes (and sha256); 1 because the images are
# noisy (little to gain from harder compression) and encoding speed bounds generation speed.
PNG_COMPRESS_LEVEL = 1

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse in continuous pixel coordinates."""

    cx: float
    cy: float
    a: float  # horizontal semi-axis
    b: float  # vertical semi-axis

    def box(self, size: int) -> Box:
        """Bounding box (x1, y1, x2, y2), clipped to a square image of side ``size``."""
        corners = (self.cx - self.a, self.cy - self.b, self.cx + self.a, self.cy + self.b)
        return tuple(float(min(size, max(0.0, v))) for v in corners)  # type: ignore[return-value]


def radius2(ellipse: Ellipse, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """Normalised squared radius ((x-cx)/a)^2 + ((y-cy)/b)^2 over the ellipse's bounding window.

    Returns the (rows, cols) window into a ``size`` x ``size`` image and the radius array for it;
    working on the window only keeps drawing cost proportional to the shape, not the image.
    """
    x1, y1, x2, y2 = ellipse.box(size)
    rows = slice(int(np.floor(y1)), int(np.ceil(y2)))
    cols = slice(int(np.floor(x1)), int(np.ceil(x2)))
    ys = (np.arange(rows.start, rows.stop, dtype=np.float32) + 0.5 - ellipse.cy) / ellipse.b
    xs = (np.arange(cols.start, cols.stop, dtype=np.float32) + 0.5 - ellipse.cx) / ellipse.a
    return (rows, cols), ys[:, None] ** 2 + xs[None, :] ** 2


def paint(image: np.ndarray, ellipse: Ellipse, shade: Callable[[np.ndarray], np.ndarray]) -> None:
    """Set the pixels inside ``ellipse`` to ``shade(r2)`` (r2 in [0, 1], 0 at the centre), in place.

    ``image`` is H x W (gray) or H x W x C; ``shade`` returns values broadcastable to the window.
    """
    window, r2 = radius2(ellipse, image.shape[0])
    inside = r2 <= 1.0
    region = image[window]
    region[inside] = shade(r2)[inside]


def boxes_apart(a: Box, b: Box, *, gap: float, row_gap: float) -> bool:
    """True when boxes ``a`` and ``b`` neither overlap nor nearly tie in reading order.

    ``gap``: minimum empty space between the boxes along x or y. ``row_gap``: minimum difference of
    their top edges, so that "top-to-bottom, then left-to-right" never hinges on a pixel or two.
    """
    separated = a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    return separated and abs(a[1] - b[1]) >= row_gap


def reading_order(boxes: list[Box]) -> list[int]:
    """Indices of ``boxes`` sorted top-to-bottom (top edge), then left-to-right (left edge)."""
    return sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 of the same shape: H x W greyscale or H x W x 3 RGB."""
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> dict:
    """H x W (greyscale, stored as such, as X-rays are) or H x W x 3 (RGB) uint8 -> an image entry of
    the sample contract (PNG bytes, size, sha256). The model sees both as RGB (``pixels.model_image``)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    data = buffer.getvalue()
    height, width = pixels.shape[:2]
    return {
        "bytes": data,
        "path": "",
        "width": int(width),
        "height": int(height),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def place_apart(
    rng: np.random.Generator,
    count: int,
    propose: Callable[[np.random.Generator, float], Ellipse],
    size: int,
    *,
    gap: float,
    row_gap: float,
    tries: int = 60,
) -> list[Ellipse]:
    """``count`` ellipses from ``propose(rng, scale)``, pairwise ``boxes_apart``, by rejection.

    After each ``tries`` failed proposals ``scale`` shrinks by 10%, so placement always ends
    (deterministically: it only consumes ``rng``).
    """
    placed: list[Ellipse] = []
    scale, failures = 1.0, 0
    while len(placed) < count:
        candidate = propose(rng, scale)
        box = candidate.box(size)
        if all(boxes_apart(box, other.box(size), gap=gap, row_gap=row_gap) for other in placed):
            placed.append(candidate)
            continue
        failures += 1
        if failures % tries == 0:
            scale *= 0.9
            placed.clear()  # restart: an early big shape may be what blocks the rest
    return placed

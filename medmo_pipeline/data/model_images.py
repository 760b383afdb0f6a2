"""A row's images as the model reads them, for training and evaluation alike.

Both decode through ``pixels.model_image``, so a checkpoint is scored on exactly the pixels it was
trained on. One image that does not decode never ends a job: its row is left out, counted and named
(``decodable_rows`` for a list, ``skip_undecodable`` for a stream).
"""

from __future__ import annotations

import io
from collections.abc import Callable

from medmo_pipeline.data.image_limits import ImageError
from medmo_pipeline.data.pixels import decoded_image, model_image, to_model_rgb


def decode_images(row: dict) -> list:
    """A row's images as the model sees them (``pixels.model_image``); raises ImageError."""
    return [model_image(img["bytes"], path=img.get("path") or "") for img in row["images"]]


def decodable_rows(rows: list[dict], log: Callable[[str], None] | None = None) -> tuple[list[dict], int]:
    """The rows whose images all decode with the model's decoder, and how many were skipped.

    One bad image never ends a job: its row is left out, counted, and named in ``log``. Images that
    the trainer's own decoding would not see as the model should (16-bit, palette, CMYK, alpha, an
    EXIF rotation) are re-encoded as 8-bit PNG of what ``decode_images`` gives; the rest keep
    their bytes.
    """
    ready = skip_undecodable(lambda row: row, log)
    kept = [row for row in map(ready, rows) if row is not None]
    return kept, len(ready.skipped)


def skip_undecodable(to_example: Callable[[dict], dict | None], log: Callable[[str], None] | None = None, *,
                     pixels: bool = False):
    """``to_example`` for rows one at a time (a stream) with ``decodable_rows``' rule: a row whose images
    do not decode gives None, its id is appended to the returned function's ``skipped`` and named in
    ``log``; the others reach ``to_example`` with model-ready images. With ``pixels``, each image entry
    also carries ``pixels``, the image decoded as the trainer's ``datasets.Image`` decoding would give
    it (``examples.image_cells`` hands that on): a trainer's stream then decodes each image once."""
    ready = _model_pixels if pixels else _model_ready

    def example(row: dict) -> dict | None:
        try:
            if not isinstance(row.get("images"), list):  # null in a shard written outside curation: a TypeError here
                raise ImageError("image_missing", f"the row's images are {type(row.get('images')).__name__}, not a list")
            images = [ready(image) for image in row["images"]]
        except ImageError as error:
            example.skipped.append(row.get("id"))
            if log is not None:
                log(f"skipped row {row.get('id')}: {error}")
            return None
        return to_example(row if all(a is b for a, b in zip(images, row["images"])) else {**row, "images": images})

    example.skipped = []
    return example


def _model_pixels(image: dict) -> dict:
    """The image entry with ``pixels``: what the trainer's decoding of ``_model_ready``'s bytes gives."""
    pixels, _ = _decoded_for_model(image)
    return {**image, "pixels": pixels}


def _model_ready(image: dict) -> dict:
    """The image entry itself when the trainer's decoding sees it as the model does, else its decoded
    pixels re-encoded as 8-bit PNG (decoded once either way, so an undecodable image raises here)."""
    pixels, plain = _decoded_for_model(image)
    if plain:
        return image
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", compress_level=1)
    return {**image, "bytes": buffer.getvalue()}


def _decoded_for_model(image: dict):
    """(the entry's image decoded once, as the model sees it, and whether its bytes already decode to
    that in any 8-bit reader: then it is the decoded image itself, else its 8-bit RGB). Raises ImageError."""
    path = image.get("path") or ""
    decoded, plain = decoded_image(image["bytes"], path=path)
    return (decoded, True) if plain else (to_model_rgb(decoded, path), False)

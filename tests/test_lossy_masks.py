"""A mask is a plane of instance ids. Saved as JPEG (or lossy WebP), its compression changes the ids
along every edge: a mask of two cells gave boxes of ids that are no cell and a stretched box. Such a
mask is refused naming its format; a lossless mask beside it is read."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from medmo_pipeline.data.adapters import iter_outcomes
from medmo_pipeline.data.outcomes import RowQuarantined


def saved(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def two_cells() -> np.ndarray:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[8:24, 8:24] = 1
    mask[30:50, 28:60] = 2
    return mask


def rows_of(tmp_path, masks: dict[str, bytes]) -> list:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for stem, data in masks.items():
        (tmp_path / "images" / f"{stem}.png").write_bytes(saved(np.full((64, 64), 90, np.uint8), "PNG"))
        (tmp_path / "masks" / f"{stem}.png").write_bytes(data)
    return list(iter_outcomes("instance_masks", tmp_path, {}))


def test_a_lossy_mask_is_refused_naming_its_format_and_a_lossless_one_is_read(tmp_path):
    jpeg, lossy_webp = saved(two_cells() * 100, "JPEG", quality=75), saved(two_cells() * 100, "WEBP", quality=80)
    # what the JPEG's ids would have given: more instances than the two cells
    assert len(np.unique(np.asarray(Image.open(io.BytesIO(jpeg))))) > 3
    outcomes = rows_of(tmp_path, {"a": saved(two_cells(), "PNG"), "b": jpeg, "c": lossy_webp,
                                  "d": saved(two_cells(), "WEBP", lossless=True)})
    by_id = {row["id"].split(":")[0]: row for row in outcomes if type(row) is dict}
    assert len(by_id["a"]["boxes"]) == 2 and len(by_id["d"]["boxes"]) == 2
    for stem, name in (("b", "a JPEG"), ("c", "a lossy WebP")):
        [image] = by_id[stem]["images"]
        assert image["bytes"] is None and image["error"].reason == "image_undecodable", image
        assert f"masks/{stem}.png: mask: {name}" in image["error"].detail and "lossless" in image["error"].detail
    assert not any(type(o) is RowQuarantined for o in outcomes)

"""The model's decoder holds a kept image at the pixel budget in bounded memory and CPU time.

A 500 KB PNG of 8000 x 8000 16-bit RGBA (within ``max_pixels``, so curation keeps it) took 5 s and
1.3 GB in ``pixels.model_image``: two whole decodes held at once, numpy copies of both, a 16-bit
window of the whole, then an RGBA copy, a background and a composite. The worst cases at the budget
decode here in a child whose address space is capped at what it maps after its imports plus
``DECODE_BUDGET``, under the suite's CPU guard (``guards.cpu_seconds_limit``); the table of every
kind is ``benches/decoder_memory.py``. The banded paths give the pixels of the whole-image ones.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cost_files import colour_tiff
from PIL import Image

from medmo_pipeline.data import pixels
from medmo_pipeline.data.pixels import model_image, window_to_uint8

ROOT = Path(__file__).resolve().parents[1]
DECODE_BUDGET = 1200 << 20  # address space a decode may add to the child's imports
CPU_SECONDS = 20  # a decode at the budget takes 1-3 s of CPU on the 2-core machine

_CHILD = r"""
import json, resource, sys
sys.path[:0] = ["tests", "benches"]
from decoder_memory import _chunk, png_zeros, tiff_zeros
from guards import cpu_seconds_limit
from medmo_pipeline.data.image_limits import ImageError
from medmo_pipeline.data.pixels import model_image
from medmo_pipeline.process_memory import address_space_kib, current_rss_kib, peak_rss_kib, reset_peak_rss
import pydicom.pixels  # as a job has it by the time it decodes

make = {"png16_RGBA": lambda: png_zeros(8000, 16, 6),
        "png8_P_tRNS": lambda: png_zeros(8000, 8, 3, _chunk(b"PLTE", bytes(768)) + _chunk(b"tRNS", bytes(256))),
        "tiff16_RGB": lambda: tiff_zeros(8000, 16, 3), "tiff32_F": lambda: tiff_zeros(8000, 32, 1, sample_format=3)}
data = make[sys.argv[1]]()
limit = address_space_kib() * 1024 + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
reset_peak_rss()
before = current_rss_kib()
try:
    with cpu_seconds_limit(float(sys.argv[3])):
        image = model_image(data, path=sys.argv[1])
    result = {"outcome": "decoded", "size": list(image.size), "mode": image.mode, "extrema": image.getextrema()}
except ImageError as error:
    result = {"outcome": error.reason, "detail": error.detail}
result["grew_mib"] = (peak_rss_kib() - before) / 1024
print(json.dumps(result))
"""


@pytest.mark.parametrize("case", ["png16_RGBA", "png8_P_tRNS", "tiff16_RGB", "tiff32_F"])
def test_an_image_at_the_pixel_budget_decodes_for_the_model_within_the_memory_and_cpu_caps(case):
    """8000 x 8000 files of zeros, a few hundred KB each: 16-bit RGBA PNG (1.3 GB and 5 s before), a
    palette PNG (a 60 KB file: 1.3 GB through its RGBA composite), deflated 16-bit RGB TIFF (1.1 GB),
    float TIFF. Each decodes (or would be refused with a reason, never by running out of memory)."""
    done = subprocess.run([sys.executable, "-c", _CHILD, case, str(DECODE_BUDGET), str(CPU_SECONDS)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["outcome"] != "decoded":
        assert "ran out of memory" not in result["detail"] and result["outcome"] == "image_too_costly", result
        return
    assert result["size"] == [8000, 8000] and result["mode"] == "RGB", result
    assert result["extrema"] == [[0, 0]] * 3, result  # zeros are black (a flat window, alpha 0 over black)
    assert result["grew_mib"] < 1024, result


# ---- the banded paths give the whole image's pixels ------------------------------------------------

def _composite_whole(image: Image.Image) -> Image.Image:
    """The decoder's composite before it was banded: the whole image over opaque black."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")


def _png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("block", [1 << 10, 1 << 22])
def test_images_with_alpha_or_a_palette_are_composited_band_by_band_to_the_whole_composite(monkeypatch, block):
    monkeypatch.setattr(pixels, "_BLOCK", block)
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (203, 317, 4), dtype=np.uint8))
    palette = rgba.convert("RGB").quantize(60)
    images = {"RGBA": rgba, "LA": rgba.convert("LA"), "P": palette,
              "P_tRNS": Image.open(io.BytesIO(_png_bytes(palette, transparency=bytes(range(0, 240, 4)))))}
    for name, image in images.items():
        data = _png_bytes(image)
        whole = _composite_whole(Image.open(io.BytesIO(data)))
        assert model_image(data, path=name).tobytes() == whole.tobytes(), name


@pytest.mark.parametrize("alpha", [False, True])
def test_16_bit_colour_is_windowed_band_by_band_to_the_whole_images_window(monkeypatch, alpha):
    """The 16-bit values windowed over the whole image (the window from the same strided rows), against
    the decoder's bands of a few rows and its table look-up."""
    rng = np.random.default_rng(5)
    values = rng.integers(100, 4000, (157, 211, 4 if alpha else 3)).astype(np.uint16)
    data = colour_tiff(values, rows_per_strip=9)
    rows = max(1, values.shape[0] * values.shape[1] * 3 // pixels._PERCENTILE_SAMPLES)
    window = pixels.percentile_window(values[::rows, :, :3])
    monkeypatch.setattr(pixels, "_LUT_FROM", 1 << 62)  # the reference: no table
    colour = window_to_uint8(values[..., :3], *window)
    if alpha:
        rgba = np.dstack([colour, (values[..., 3] >> 8).astype(np.uint8)])
        expected = _composite_whole(Image.fromarray(rgba)).tobytes()
    else:
        expected = colour.tobytes()
    monkeypatch.setattr(pixels, "_LUT_FROM", 1 << 8)
    monkeypatch.setattr(pixels, "_BLOCK", 1 << 10)
    assert model_image(data).tobytes() == expected


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_windowing_through_a_table_gives_the_computed_window(monkeypatch, dtype):
    info = np.iinfo(dtype)
    values = np.random.default_rng(1).integers(info.min, int(info.max) + 1, 300_000).astype(dtype)
    for function in ("LINEAR", "LINEAR_EXACT"):
        for center, width in [(0.0, 1.0), (100.0, 37.5), (float(info.max) / 3, float(info.max)), (-5.0, 0.5)]:
            monkeypatch.setattr(pixels, "_LUT_FROM", 1 << 62)
            computed = window_to_uint8(values, center, width, function=function)
            monkeypatch.setattr(pixels, "_LUT_FROM", 1 << 18)
            assert np.array_equal(window_to_uint8(values, center, width, function=function), computed)

"""Decodes that cost more than a file's size or header shows, bounded before decoding, and decodes
that must give every pixel: 16-bit colour TIFFs in strips and tiles, WebP (its decoder holds 16
bytes a pixel), RLE BMP (decoded in Python), RLE Lossless DICOM (pydicom expands a whole segment).

The refusals are measured in a child process under the hostile suite's caps (``hostile_job.py``:
address space, what the process maps after its imports plus 1 GiB; CPU time, 60 s).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from cost_files import (
    colour_tiff,
    idle_runs_bmp,
    one_pixel_rows_bmp,
    packbits,
    rle4_runs_bmp,
    rle8_rows,
    rle_bmp,
    rle_dicom,
    rle_repeat_bomb,
    webp,
)
from hostile_files import chunk, plain_png, png, twelve_bit_values
from PIL import Image
from pydicom.pixels import pixel_array

from medmo_pipeline.data.dicom import read_dicom
from medmo_pipeline.data.image_limits import (
    BMP_RLE_PIXEL_WEIGHT,
    WEBP_PIXEL_WEIGHT,
    ImageError,
    ImageLimits,
    decoder_error,
    open_image,
)
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.pixels import (
    decoded_image,
    dicom_entry,
    model_image,
    percentile_window,
    window_to_uint8,
)

ROOT = Path(__file__).resolve().parents[1]
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"  # shipped with pydicom: no download


def _reason(run) -> tuple[str, str]:
    try:
        run()
    except ImageError as error:
        return error.reason, error.detail
    return "decoded", ""


# ---- 16-bit colour TIFF: every strip and tile read for its low bytes --------------------------------

@pytest.mark.parametrize("layout", [{"rows_per_strip": 8}, {"rows_per_strip": 3},
                                    {"rows_per_strip": 8, "order": ">"}, {"tile": 16}, {"tile": 16, "order": ">"},
                                    {"tile": 16, "deflate": True}, {"rows_per_strip": 8, "deflate": True}],
                         ids=["strips", "strips-of-3", "strips-MM", "tiles", "tiles-MM", "tiles-deflate",
                              "strips-deflate"])
@pytest.mark.parametrize("alpha", [False, True], ids=["rgb", "rgba"])
def test_a_16_bit_colour_tiff_in_strips_or_tiles_decodes_to_the_values_of_one_strip(layout, alpha):
    """The low bytes come from a second decode in the other byte order; it read the first strip
    (or tile) only, so every later one had a low byte of 0: 12-bit values in 16 levels, all rows
    windowed wrong, and the file kept."""
    values = twelve_bit_values(alpha)
    colour = values[..., :3]
    windowed = window_to_uint8(colour, *percentile_window(colour))
    data = colour_tiff(values, **layout)
    assert len(Image.open(io.BytesIO(data)).tile) > 1 or layout.get("deflate")  # pieces PIL reads one by one
    one_strip = np.asarray(decoded_image(colour_tiff(values))[0])
    decoded = np.asarray(decoded_image(data)[0])
    assert (decoded == one_strip).all() and (decoded[..., :3] == windowed).all()
    assert inspect_image(data)[:2] == (48, 40)


# ---- WebP: weighed by what its decoder holds ------------------------------------------------------

def _webp_with_exif(side: int) -> bytes:
    """An extended WebP (VP8X: its canvas size in that chunk) of ``side`` x ``side``."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (30, 60, 90)).save(buffer, format="WEBP", exif=Image.Exif().tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("make", [webp, lambda side: webp(side, lossless=False), _webp_with_exif],
                         ids=["lossless-VP8L", "lossy-VP8", "extended-VP8X"])
def test_a_webp_pixel_counts_several_times_against_the_budget_read_from_its_header(make):
    """PIL decodes a WebP through libwebp's animation decoder: about 16 bytes a pixel (two canvases
    and the frame besides the image), where a PNG's or JPEG's check holds 4. The size is read from
    whichever header the file starts with, before PIL opens it (its open allocates the canvases)."""
    limits = ImageLimits(max_pixels=WEBP_PIXEL_WEIGHT * 64 * 64)
    within = make(64)
    assert inspect_image(within, limits) == (64, 64, "WEBP")
    assert model_image(within, limits).size == (64, 64)
    reason, detail = _reason(lambda: open_image(make(72), limits, "slide.webp"))
    assert reason == "image_too_costly" and "slide.webp WebP of 72x72" in detail and "16 bytes a pixel" in detail
    # beyond the budget itself: too large, as any other format
    assert _reason(lambda: open_image(make(72), ImageLimits(max_pixels=64 * 64)))[0] == "image_too_large"


# ---- RLE BMP: decoded in Python --------------------------------------------------------------------

def test_a_small_rle_bmp_still_decodes_to_its_pixels():
    rows = np.zeros((40, 48), np.uint8)
    rows[5:30, 10:40] = 200
    rows[::7] = np.arange(48, dtype=np.uint8) * 5  # short runs
    data = rle8_rows(rows)
    assert inspect_image(data) == (48, 40, "BMP")
    assert (np.asarray(model_image(data, path="scan.bmp"))[..., 0] == rows).all()
    rle4 = rle_bmp(48, 40, (bytes((48, 0x1F)) + b"\x00\x00") * 40 + b"\x00\x01", rle4=True)  # indices 1, 15, 1...
    assert (np.asarray(model_image(rle4))[..., 0] == np.tile([17, 255], 24)).all()


def test_an_rle_bmp_is_held_to_a_python_speed_pixel_budget_and_its_runs_to_its_size():
    limits = ImageLimits(max_pixels=BMP_RLE_PIXEL_WEIGHT * 64 * 64)
    single_runs = b"".join(bytes((1, value)) for value in range(64))  # each pixel a run of its own: the longest
    longest = rle_bmp(64, 64, (single_runs + b"\x00\x00") * 64 + b"\x00\x01")
    assert inspect_image(longest, limits)[:2] == (64, 64)
    assert (np.asarray(model_image(longest, limits))[..., 0] == np.arange(64)).all()
    reason, detail = _reason(lambda: open_image(one_pixel_rows_bmp(65), limits, "scan.bmp"))
    assert reason == "image_too_costly" and "scan.bmp RLE8 BMP of 65x65" in detail and "Python" in detail
    assert "PNG" in detail  # what to do about it
    padded = longest[:-2] + b"\x01\x07" + longest[-2:]  # one run more than any 64 x 64 image takes
    reason, detail = _reason(lambda: open_image(padded, limits, "scan.bmp"))
    assert reason == "image_too_costly" and "bytes of runs" in detail and "scan.bmp" in detail
    assert _reason(lambda: open_image(rle4_runs_bmp(65), limits))[0] == "image_too_costly"


# ---- RLE Lossless DICOM: segments bounded before pydicom expands them ----------------------------

@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit_2frame.dcm",
                                  "SC_rgb_rle_32bit.dcm", "rtdose_rle.dcm"])
def test_valid_rle_dicom_files_are_still_converted_to_their_pixels(name):
    data = (PYDICOM_FILES / name).read_bytes()
    dataset = pydicom.dcmread(io.BytesIO(data))
    frames = int(dataset.get("NumberOfFrames") or 1)
    _, pixels = read_dicom(data, ImageLimits(), name)
    assert np.array_equal(pixels, pixel_array(dataset, index=frames // 2 if frames > 1 else None))
    assert dicom_entry(data, path=name)["bytes"]


def test_an_rle_dicom_of_our_own_encoding_is_converted():
    plane = (np.arange(64 * 64) % 251).astype(np.uint8)
    entry = dicom_entry(rle_dicom(64, 64, [packbits(plane.tobytes())]), path="ct/a.dcm")
    assert entry["bytes"] and (entry["width"], entry["height"]) == (64, 64)


def test_an_rle_segment_padded_a_byte_a_row_is_read_as_pydicom_reads_it():
    """Some encoders pad each row to even bytes: pydicom keeps the first rows x columns bytes (with
    a warning), and so is it converted here."""
    rows = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    padded = np.concatenate([rows, np.zeros((64, 1), np.uint8)], axis=1)
    entry = dicom_entry(rle_dicom(64, 64, [packbits(padded.tobytes())]), path="ct/padded.dcm")
    assert entry["bytes"] and (entry["width"], entry["height"]) == (64, 64)


@pytest.mark.parametrize(("segments", "reason", "says"), [
    ([b"\x81\x07" * 4096], "image_undecodable", "segment 0 decodes to more than the 4096 bytes"),  # 512 KiB
    ([b"\x80" * 20_000 + packbits(bytes(4096))], "image_too_costly", "more than the 10241 any 5120 bytes take"),
    ([packbits(bytes(4000))], "image_undecodable", "segment 0 decodes to 4000 bytes, not the 4096"),
    ([packbits(bytes(4096))] * 2, "image_undecodable", "2 segments, where its samples take 1"),
    ([packbits(bytes(4096))[:-2]], "image_undecodable", "decodes to 4094 bytes"),  # its last run cut short
], ids=["expands", "idle-runs", "short", "segments", "cut-short"])
def test_an_rle_frame_is_refused_naming_frame_and_segment_before_pydicom_expands_it(segments, reason, says):
    error = dicom_entry(rle_dicom(64, 64, segments), path="ct/slice.dcm")["error"]
    assert error.reason == reason and error.detail.startswith("DICOM ct/slice.dcm: RLE frame 0")
    assert says in error.detail


def test_a_memory_error_pydicom_reports_only_by_its_message_is_the_cost_not_damage(monkeypatch):
    """pydicom logs each plugin's exception and raises a RuntimeError of their messages: a
    MemoryError (no message) read "...pydicom: " and the row was called undecodable."""
    from pydicom.pixels.decoders import rle

    data = (PYDICOM_FILES / "MR_small_RLE.dcm").read_bytes()
    for raised, reason, says in [(MemoryError(), "image_too_costly", "ran out of memory"),
                                 (KeyError(), "image_undecodable", "KeyError (no message)"),
                                 (ValueError("a bad run"), "image_undecodable", "ValueError: a bad run")]:
        def decode(*args, raised=raised, **kwargs):
            raise raised

        monkeypatch.setattr(rle, "_rle_decode_frame", decode)
        error = dicom_entry(data, path="mr/a.dcm")["error"]
        assert error.reason == reason and says in error.detail and "mr/a.dcm" in error.detail, error


def test_a_wrapped_memory_error_is_the_cost_and_an_empty_message_still_says_what_failed():
    try:
        try:
            raise MemoryError
        except MemoryError as error:
            raise RuntimeError("decoder failed") from error
    except RuntimeError as wrapped:
        assert decoder_error(wrapped, "x.dcm: RuntimeError: decoder failed").reason == "image_too_costly"
    assert decoder_error(KeyError(), "x.png KeyError: ").detail == "x.png KeyError (no message)"
    assert decoder_error(KeyError(), "x.png:").detail == "x.png (KeyError, no message)"


# ---- what a refusal at open says --------------------------------------------------------------------

def test_a_png_pil_refuses_to_open_is_named_as_a_png_with_pils_reason():
    iccp = chunk(b"iCCP", b"sRGB\x00\x01" + zlib.compress(b"profile"))  # compression method 1: PIL refuses
    data = png(48, 40, zlib.compress(bytes(41 * 40)), extra=iccp)
    reason, detail = _reason(lambda: model_image(data, path="scan.png"))
    assert reason == "image_undecodable" and detail.startswith("scan.png a PNG that PIL refuses to open")
    assert "iCCP" in detail
    assert "not an image in a format read here" in _reason(lambda: model_image(b"\x00\x00\x01\x00" + bytes(60)))[1]


# ---- measured in a child under the suite's caps -----------------------------------------------------

_CAPPED_CHILD = """
import json, resource, sys
from pathlib import Path
sys.path.insert(0, "tests")
from hostile_job import CPU_SECONDS, MEMORY_BUDGET
from medmo_pipeline.data.image_limits import ImageError
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.pixels import dicom_entry, model_image
from medmo_pipeline.process_memory import address_space_kib, current_rss_kib, peak_rss_kib, reset_peak_rss
import pydicom.pixels  # imported before the limit, as a job has it by the time it reads its files

limit = address_space_kib() * 1024 + MEMORY_BUDGET
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))

def outcome(run):
    try:
        run()
    except ImageError as error:
        return [error.reason, error.detail]
    return ["decoded", ""]

results = {}
for path in map(Path, sys.argv[1:]):
    assert reset_peak_rss()
    before = current_rss_kib()
    data = path.read_bytes()
    if path.suffix == ".dcm":
        error = dicom_entry(data, path=path.name).get("error")
        got = {"dicom_entry": [error.reason, error.detail] if error else ["decoded", ""]}
    else:
        got = {"inspect_image": outcome(lambda: inspect_image(data)),
               "model_image": outcome(lambda: model_image(data, path=path.name))}
    del data
    results[path.name] = {"outcomes": got, "peak_kib": peak_rss_kib(), "grew_kib": peak_rss_kib() - before}
print(json.dumps(results))
"""

_BIG_WEBP = "from cost_files import webp; import sys; open(sys.argv[1], 'wb').write(webp(8000, lossless=False))"


def test_each_refusal_stays_within_the_suites_memory_cap_in_a_child(tmp_path):
    """An 8000 x 8000 WebP (182 KB; it took 1 GiB to check), an 8000 x 8000 RLE8 BMP of 33 KB (6 s
    to check, 6 more to decode) and an RLE4 one of long runs (825 MiB to decode, a pixel a step), an
    8 x 8 RLE8 BMP padded with 16 MiB of runs, and a 64 x 64 RLE DICOM
    whose segment is 24 MiB of "repeat 128 times" (1.8 GiB in pydicom): each refused from its
    header or its runs, growing the process by a fraction of what a decode would; the good files
    beside them decoded."""
    subprocess.run([sys.executable, "-c", _BIG_WEBP, str(tmp_path / "slide.webp")], check=True, timeout=300,
                   cwd=Path(__file__).parent)  # its encoder takes 800 MB: not this process's
    files = {"one_pixel_rows.bmp": one_pixel_rows_bmp(8000), "idle_runs.bmp": idle_runs_bmp(16),
             "runs.bmp": rle4_runs_bmp(8000), "bomb.dcm": rle_repeat_bomb(24),
             "good.bmp": rle8_rows(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))),
             "good.webp": webp(512), "good.dcm": (PYDICOM_FILES / "MR_small_RLE.dcm").read_bytes(),
             "good.png": plain_png()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / name) for name in ["slide.webp", *files]]
    done = subprocess.run([sys.executable, "-c", _CAPPED_CHILD, *paths], capture_output=True, text=True,
                          timeout=600, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"slide.webp": ("image_too_costly", "counts 4 times"),
                "one_pixel_rows.bmp": ("image_too_costly", "Python"), "runs.bmp": ("image_too_costly", "Python"),
                "idle_runs.bmp": ("image_too_costly", "bytes of runs"),
                "bomb.dcm": ("image_undecodable", "RLE frame 0: segment 0 decodes to more than")}
    for name, result in results.items():
        for what, (reason, detail) in result["outcomes"].items():
            want, says = expected.get(name, ("decoded", ""))
            assert reason == want and says in detail, (name, what, detail)
            assert "ran out of memory" not in detail  # refused from the file, not by the cap
        assert result["peak_kib"] < 1 << 20, name
        assert result["grew_kib"] < 128 << 10, (name, result)  # no decode of the declared image

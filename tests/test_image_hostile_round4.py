"""A fourth round of crafted image files, beyond PNG: DICOM LUTs and rescales pydicom cannot apply,
progressive JPEGs whose decoder holds every coefficient, a multi-picture JPEG (MPO) named .jpg; and
the cases found already bounded, named and alike in curation and the decoder, kept as such. Each
file is settled within ``guards.cpu_seconds_limit``."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from cost_files import decimal_string, lut_item, progressive_jpeg, ramp_dicom
from guards import cpu_seconds_limit
from hostile_files import (
    _dicom_file,
    _element,
    _image_elements,
    jpeg_dicom,
    plain_jpeg,
    tiff_data_at,
    tiff_directory,
)
from PIL import Image
from pydicom.data import get_testdata_file

from medmo_pipeline.data import pixels
from medmo_pipeline.data.adapters import iter_outcomes
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.curation.rules import CurationLimits, ImageChecker, check_row
from medmo_pipeline.data.image_limits import ImageError, ImageLimits, using_limits
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.pixels import dicom_entry, model_image

RAMP = np.arange(4096, dtype="<u2")


def _outcome(run, seconds: float = 2) -> tuple[str, str]:
    try:
        with cpu_seconds_limit(seconds):
            run()
    except ImageError as error:
        return error.reason, error.detail
    return "kept", ""


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _pixels(entry: dict) -> np.ndarray:
    assert entry.get("error") is None, entry.get("error")
    return np.asarray(Image.open(io.BytesIO(entry["bytes"])))


# ---- DICOM: a LUT or rescale pydicom cannot apply is left out, not the row -------------------------

_WINDOW = decimal_string(0x1050, "2048") + decimal_string(0x1051, "4096")
_RESCALE = decimal_string(0x1052, "-1024") + decimal_string(0x1053, "1")


@pytest.mark.parametrize(("extra", "as_if"), [
    (lut_item((4096, 0, 16), struct.pack("<2H", 0, 65535)), b""),  # 2 entries of 4096: pydicom's struct.error
    (lut_item((4096, 0, 40), RAMP.tobytes()), b""),  # 40 bits an entry: NotImplementedError
    (lut_item((4096, 0, 0), RAMP.tobytes()), b""),
    (lut_item((4096, 0, 16), b""), b""),
    (_RESCALE + lut_item((10, 0, 16), struct.pack("<2H", 0, 65535)), _RESCALE),
    (_WINDOW + _RESCALE + lut_item((4096, 0, 7), RAMP.tobytes()), _WINDOW + _RESCALE),  # the file's window instead
    (lut_item((4096, 0, 16), RAMP.tobytes(), sequence=0x3000), b""),  # Modality LUT of 4096 entries: applied
    (lut_item((4096, 0, 16), struct.pack("<2H", 0, 65535), sequence=0x3000), b""),  # short: left out
    (lut_item((4096, 0, 12), RAMP.tobytes(), sequence=0x3000), b""),  # "data type 'uint12' not understood"
    (lut_item((10, 0, 16), RAMP.tobytes(), sequence=0x3000), b""),  # longer than it declares
    (decimal_string(0x1052, "0") + decimal_string(0x1053, "1\\2"), decimal_string(0x1052, "0")
     + decimal_string(0x1053, "1")),  # two slopes: pydicom multiplied by the list and raised
    (decimal_string(0x1052, "-1024\\5") + decimal_string(0x1053, "1"), _RESCALE),
], ids=["voi-short", "voi-40-bits", "voi-0-bits", "voi-empty", "voi-short-rescaled", "voi-7-bits-window",
        "modality-identity", "modality-short", "modality-12-bits", "modality-long", "two-slopes", "two-intercepts"])
def test_a_lut_or_rescale_pydicom_cannot_apply_is_left_out_and_the_image_kept(extra, as_if):
    """Before, each raised out of ``dicom_entry`` (struct.error, NotImplementedError, TypeError,
    ValueError): the row was a ``malformed_record`` where it was caught, the conversion named
    nothing. Now the file is windowed as if the LUT were not there, or by the first of its values."""
    with cpu_seconds_limit(2):
        got, expected = dicom_entry(ramp_dicom(extra), path="ct/x.dcm"), dicom_entry(ramp_dicom(as_if), path="ct/x.dcm")
    assert np.array_equal(_pixels(got), _pixels(expected))


def test_a_lut_pydicom_can_apply_is_still_applied():
    inverted = lut_item((4096, 0, 16), (65535 - RAMP * 16).astype("<u2").tobytes())
    plain = _pixels(dicom_entry(ramp_dicom(_RESCALE)))
    through_lut = _pixels(dicom_entry(ramp_dicom(_RESCALE + inverted)))
    assert plain[0, 0] < plain[-1, -1] and through_lut[0, 0] > through_lut[-1, -1]  # the LUT's inversion
    for name in ("vlut_04.dcm", "mlut_18.dcm"):  # pydicom's files with a VOI LUT and a Modality LUT
        path = Path(get_testdata_file(name, download=False))
        assert pixels._voi_lut_usable(_dataset(path)) or pixels._rescale_usable(_dataset(path))
        assert dicom_entry(path).get("error") is None


def _dataset(path: Path):
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


def test_a_conversion_that_fails_past_the_checks_is_named_not_raised(monkeypatch):
    def fails(block, dataset):
        raise ZeroDivisionError("odd values")

    monkeypatch.setattr(pixels, "_rescale", fails)
    error = dicom_entry(ramp_dicom(_RESCALE), path="ct/x.dcm")["error"]
    assert error.reason == "image_undecodable"
    assert error.detail.startswith("DICOM ct/x.dcm: cannot be windowed") and "ZeroDivisionError: odd values" in error.detail


def test_a_dicom_source_keeps_its_files_of_odd_luts(tmp_path):
    root = tmp_path / "src" / "ct"
    root.mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm", download=False), root / "good.dcm")
    (root / "short_lut.dcm").write_bytes(ramp_dicom(lut_item((4096, 0, 16), struct.pack("<2H", 0, 65535))))
    (root / "two_slopes.dcm").write_bytes(ramp_dicom(decimal_string(0x1050, "1000") + decimal_string(0x1051, "500")
                                                     + decimal_string(0x1052, "0") + decimal_string(0x1053, "1\\2")))
    (root / "no_pixels.dcm").write_bytes(_dicom_file("1.2.840.10008.1.2.1", _image_elements(64, 64)))
    with using_limits(ImageLimits()), cpu_seconds_limit(20):
        report = curate(iter_outcomes("image_folder", tmp_path / "src", {}), tmp_path / "out", source="t", shard_rows=50)
    assert report["rows_kept"] == 3, report["quarantined_by_reason"]  # were 1: both odd files malformed_record
    assert report["quarantined_by_reason"] == {"image_undecodable": 1}


# ---- progressive JPEG: every coefficient held ------------------------------------------------------

@pytest.mark.parametrize(("make", "reason"), [
    (lambda: progressive_jpeg(8000, 4), "image_too_costly"),  # 500 KB: 735 MiB to check, again to decode
    (lambda: progressive_jpeg(8000, 3), "image_too_costly"),  # 4:4:4, 375 KB: 614 MiB
    (lambda: progressive_jpeg(1000, 4), "kept"),
    (lambda: progressive_jpeg(1000, 1), "kept"),
    (lambda: progressive_jpeg(1008, 3, sampling=0x22), "kept"),
], ids=["cmyk-8000", "rgb444-8000", "cmyk-1000", "grey-1000", "rgb420-1008"])
def test_a_progressive_jpeg_is_weighed_by_the_coefficients_its_decoder_holds(make, reason):
    data = make()
    got, detail = _outcome(lambda: inspect_image(data))
    assert got == reason, detail
    assert _outcome(lambda: model_image(data))[0] == reason
    if reason != "kept":
        assert "progressive JPEG of 8000x8000" in detail and "coefficients" in detail


def test_the_coefficient_weight_follows_the_budget_and_the_sampling():
    """At a budget of a million pixels (4 MB a decode): a progressive 4:2:0 colour image of 800 x 800
    holds 6 bytes a pixel, 3.8 MB; of 992 x 992, 5.9 MB. Greyscale (3 bytes a pixel) and baseline
    (decoded a row of blocks at a time) stay within it at the budget itself."""
    limits = ImageLimits(max_pixels=1_000_000)
    assert _outcome(lambda: inspect_image(progressive_jpeg(800, 3, sampling=0x22), limits))[0] == "kept"
    assert _outcome(lambda: inspect_image(progressive_jpeg(992, 3, sampling=0x22), limits))[0] == "image_too_costly"
    assert _outcome(lambda: inspect_image(progressive_jpeg(992, 1), limits))[0] == "kept"
    assert _outcome(lambda: inspect_image(progressive_jpeg(992, 4, progressive=False), limits))[0] == "kept"


def test_a_progressive_dicom_frame_is_weighed_alike():
    with cpu_seconds_limit(2):
        error = dicom_entry(jpeg_dicom(progressive_jpeg(8000, 3), 8000), path="ct/p.dcm")["error"]
    assert error.reason == "image_too_costly" and error.detail.startswith("DICOM ct/p.dcm:")


# ---- MPO: a JPEG, as its content says -----------------------------------------------------------------

def test_a_multi_picture_jpeg_is_a_jpeg_under_its_jpg_name():
    data = _save(Image.new("RGB", (64, 64), 10), "MPO", save_all=True, append_images=[Image.new("RGB", (64, 64), 200)])
    assert inspect_image(data) == (64, 64, "JPEG")  # PIL names it "MPO", which contradicted ".jpg"
    limits = CurationLimits(check_extension=True)
    row = {"id": "a", "task": "caption", "messages": [{"role": "user", "content": "Describe."},
                                                      {"role": "assistant", "content": "A photograph."}],
           "images": [{"bytes": data, "path": "photos/a.jpg"}]}
    kept, _ = check_row(row, source="t", images=ImageChecker(limits.image), limits=limits)
    assert kept["images"][0]["width"] == 64
    assert np.asarray(model_image(data))[0, 0].tolist() == np.asarray(Image.new("RGB", (1, 1), 10))[0, 0].tolist()


# ---- found bounded and named, curation and the decoder alike: kept so ----------------------------------

def _raw_tiff(bits: int, samples: int, photometric: int, sample_format: int, data: bytes, extra=()) -> bytes:
    """A 64 x 64 uncompressed TIFF in one strip."""
    entries = 10 + len(extra)
    bits_at = tiff_data_at(entries)
    bits_value = bits_at if samples > 2 else bits | (bits << 16 if samples == 2 else 0)
    data_at = bits_at + 2 * samples
    directory = sorted([(256, 3, 1, 64), (257, 3, 1, 64), (258, 3, samples, bits_value), (259, 3, 1, 1),
                        (262, 3, 1, photometric), (273, 4, 1, data_at), (277, 3, 1, samples), (278, 3, 1, 64),
                        (279, 4, 1, len(data)), (339, 3, 1, sample_format), *extra])
    return tiff_directory(directory) + struct.pack(f"<{samples}H", *[bits] * samples) + data


def _two_frame_headers(first: tuple[int, int], second: tuple[int, int]) -> bytes:
    data = plain_jpeg(64, 64)
    at = data.index(b"\xff\xc0")
    segment = bytearray(data[at:at + 2 + struct.unpack_from(">H", data, at + 2)[0]])
    one, two = bytearray(segment), bytearray(segment)
    one[5:9], two[5:9] = struct.pack(">HH", *first), struct.pack(">HH", *second)
    return data[:at] + bytes(one) + bytes(two) + data[at + len(segment):]


def _gif_frames(count: int) -> bytes:
    frame = b"\x21\xf9\x04\x00\x00\x00\x00\x00\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00\x02\x02\x44\x01\x00"
    return _save(Image.new("P", (64, 64), 1), "GIF")[:-1] + frame * count + b"\x3b"


def _gif_screen(side: int) -> bytes:
    data = bytearray(_save(Image.new("P", (64, 64), 1), "GIF"))
    data[6:10] = struct.pack("<HH", side, side)
    return bytes(data)


def _bmp_compression(compression: int) -> bytes:
    data = bytearray(_save(Image.new("RGB", (64, 64), 3), "BMP"))
    data[30:34] = struct.pack("<I", compression)
    return bytes(data)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: _save(Image.new("LAB", (64, 64), (50, 128, 128)), "TIFF"), "kept"),
    (lambda: _raw_tiff(16, 1, 1, 2, (RAMP.astype("<i2") - 2048).tobytes()), "kept"),  # signed 16-bit
    (lambda: _raw_tiff(12, 1, 1, 1, bytes(64 * 64 * 3 // 2)), "kept"),  # 12-bit packed
    (lambda: _raw_tiff(16, 1, 1, 3, np.linspace(0, 1, 4096).astype("<f2").tobytes()), "image_undecodable"),  # float16
    (lambda: _raw_tiff(8, 2, 1, 1, bytes(8192)), "image_undecodable"),  # two samples, no alpha among them
    (lambda: _raw_tiff(8, 3, 2, 1, bytes(12288), extra=[(284, 3, 1, 2)]), "kept"),  # 8-bit planes
    (lambda: _raw_tiff(8, 1, 1, 1, bytes(100)), "image_truncated"),  # its strip runs past the end
    (lambda: _save(Image.new("1", (64, 64), 1), "TIFF", compression="group4"), "kept"),
    (lambda: _save(Image.new("RGB", (64, 64), 7), "TIFF", compression="jpeg"), "kept"),  # YCbCr JPEG in TIFF
    (lambda: _save(Image.new("L", (64, 64), 3), "TIFF", big_tiff=True), "kept"),
    (lambda: _save(Image.new("L", (64, 64)), "TIFF", save_all=True, append_images=[Image.new("L", (64, 64))] * 300),
     "kept"),  # pages after the first are never read
    (lambda: _two_frame_headers((64, 64), (30000, 30000)), "image_too_large"),  # PIL sizes by the last
    (lambda: _two_frame_headers((30000, 30000), (64, 64)), "image_undecodable"),  # libjpeg refuses the second
    (lambda: plain_jpeg(64, 64)[:-2] + plain_jpeg(64, 64)[2:], "image_undecodable"),  # a frame header after a scan
    (lambda: _gif_frames(10_000), "kept"),  # 10,000 frames: the first is decoded
    (lambda: _gif_screen(60_000), "image_too_large"),  # 138 bytes declaring a 60000 x 60000 screen
    (lambda: _bmp_compression(4), "image_undecodable"),  # BI_JPEG
    (lambda: _bmp_compression(5), "image_undecodable"),  # BI_PNG
    (lambda: _save(Image.new("RGB", (64, 64)), "JPEG2000"), "image_undecodable"),
    (lambda: b"8BPS" + bytes(100), "image_undecodable"),  # Photoshop
], ids=["tiff-lab", "tiff-int16", "tiff-12-bit", "tiff-float16", "tiff-two-samples", "tiff-planes-8-bit",
        "tiff-strip-past-end", "tiff-group4", "tiff-jpeg", "bigtiff", "tiff-301-pages", "jpeg-sof-then-bigger",
        "jpeg-sof-then-smaller", "jpeg-sof-after-scan", "gif-10000-frames", "gif-huge-screen", "bmp-jpeg",
        "bmp-png", "jpeg2000", "psd"])
def test_other_layouts_are_settled_cheaply_and_alike_by_curation_and_the_decoder(make, reason):
    data = make()
    got, detail = _outcome(lambda: inspect_image(data))
    assert got == reason, detail
    decoded = _outcome(lambda: model_image(data))[0]
    assert decoded == reason or {decoded, reason} == {"image_undecodable", "image_truncated"}
    assert got == "kept" or detail  # a refusal says why


def test_a_signed_16_bit_tiff_is_windowed_in_order_not_wrapped():
    ramp = (RAMP.astype(np.int32) - 2048).astype("<i2")  # -2048 .. 2047 along the rows
    out = np.asarray(model_image(_raw_tiff(16, 1, 1, 2, ramp.tobytes())))[..., 0].reshape(-1).astype(int)
    assert (np.diff(out) >= 0).all() and out[0] == 0 and out[-1] == 255


@pytest.mark.parametrize(("data", "says"), [
    (_dicom_file("1.2.840.10008.1.2.1", _image_elements(64, 64).replace(b"\x01\x01US\x02\x00\x10\x00",
                                                                     b"\x01\x01US\x02\x00\x14\x00")
                 + _element(0x7FE0, 0x0010, b"OW", bytes(8192))), "'Bits Stored' value of '20' is invalid"),
    (_dicom_file("1.2.840.10008.1.2.1", _image_elements(64, 64)), "no pixel data to decode"),
], ids=["bits-stored-over-allocated", "no-pixel-data"])
def test_dicom_bit_layouts_that_cannot_be_read_are_named(data, says):
    with cpu_seconds_limit(2):
        error = dicom_entry(data, path="ct/x.dcm")["error"]
    assert error.reason == "image_undecodable" and says in error.detail and error.detail.startswith("DICOM ct/x.dcm")

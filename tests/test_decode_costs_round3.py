"""A third round of crafted files: a DICOM frame found through its Extended Offset Table, .npz samples
held to bytes as well as pixels, masks read a band of rows at a time, the shape a header declares
refused before the decode; and the red-team cases found already bounded and named, kept as such.
Each file is settled within ``guards.cpu_seconds_limit``; memory is measured in a child."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from guards import cpu_seconds_limit
from hostile_files import _dicom_file, _element, _image_elements, _segment, _uid, plain_jpeg
from PIL import Image

from medmo_pipeline.data.adapters import masks, npz_masks
from medmo_pipeline.data.adapters.records import SourceLayoutError
from medmo_pipeline.data.image_limits import ImageError, ImageLimits, using_limits
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.pixels import dicom_entry, model_image

ROOT = Path(__file__).resolve().parents[1]
EXPLICIT = "1.2.840.10008.1.2.1"


def _outcome(run) -> tuple[str, str]:
    try:
        with cpu_seconds_limit(2):
            run()
    except ImageError as error:
        return error.reason, error.detail
    return "kept", ""


def _jpeg(side: int, declare: int = 0) -> bytes:
    """A greyscale JPEG of ``side`` x ``side``, its frame header declaring ``declare`` x ``declare``."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (side, side), dtype=np.uint8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    if declare:  # the frame header says another size than the pixels
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", declare, declare)
    return bytes(data)


# ---- DICOM: the frame pydicom decodes is the frame checked ---------------------------------------

def _long(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH", group, element) + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value


def _extended_offsets_dicom(fragments: list[bytes], frame: int) -> bytes:
    """A 64 x 64 JPEG baseline DICOM of one frame held in ``fragments`` (an empty basic offset
    table), whose Extended Offset Table says the frame is fragment ``frame``."""
    fragments = [piece + b"\x00" * (len(piece) % 2) for piece in fragments]
    items = [struct.pack("<HHI", 0xFFFE, 0xE000, len(piece)) + piece for piece in fragments]
    table = (_long(0x7FE0, 0x0001, b"OV", struct.pack("<Q", sum(map(len, items[:frame]))))
             + _long(0x7FE0, 0x0002, b"OV", struct.pack("<Q", len(fragments[frame]))))
    pixel_data = (struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
                  + struct.pack("<HHI", 0xFFFE, 0xE000, 0) + b"".join(items) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return _dicom_file("1.2.840.10008.1.2.4.50", _image_elements(64, 64, bits=8) + table + pixel_data)


def test_a_dicom_frame_found_through_the_extended_offset_table_is_the_frame_checked():
    """The check read the frame through the basic offset table (here: the fragments joined, a
    64 x 64 JPEG first), pydicom decodes the one the Extended Offset Table points at: a 6 KB file
    whose table pointed at a JPEG declaring 12000 x 12000 grew the process by 1,376 MiB."""
    with cpu_seconds_limit(2):
        error = dicom_entry(_extended_offsets_dicom([_jpeg(64), _jpeg(64, declare=12000)], 1), path="ct/a.dcm")["error"]
    assert error.reason == "image_undecodable"
    assert error.detail == "DICOM ct/a.dcm: its compressed frame declares 12000x12000 pixels, the data set 64x64"
    with cpu_seconds_limit(2):
        entry = dicom_entry(_extended_offsets_dicom([_jpeg(64)], 0), path="ct/b.dcm")
    assert "error" not in entry and (entry["width"], entry["height"]) == (64, 64)


def test_a_dicom_frame_pil_cannot_identify_is_named_the_same_on_every_run():
    """A basic offset table pointing the second frame past the data: PIL's "cannot identify image
    file <_io.BytesIO object at 0x7f...>" put an address in the quarantine detail."""
    fragments = [_jpeg(64) + b"\x00" * (len(_jpeg(64)) % 2)] * 2
    items = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(piece)) + piece for piece in fragments)
    table = struct.pack("<II", 0, 1 << 31)
    pixel_data = (struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
                  + struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table + items
                  + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    data = _dicom_file("1.2.840.10008.1.2.4.50", _image_elements(64, 64, 2, bits=8) + pixel_data)
    with cpu_seconds_limit(2):
        error = dicom_entry(data, path="ct/c.dcm")["error"]
    assert error.reason == "image_undecodable" and " at 0x" not in error.detail, error.detail
    assert error.detail == "DICOM ct/c.dcm: UnidentifiedImageError: cannot identify image file <_io.BytesIO object>"


# ---- .npz samples: bytes as well as pixels -------------------------------------------------------

def _write_npz(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with zipfile.ZipFile(folder / "cells.npz", "w", zipfile.ZIP_DEFLATED) as archive:  # zeros: a few KB
        for key, values in (("X", images), ("y", labels)):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, values)


def test_an_npz_sample_is_held_to_the_bytes_of_the_pixel_budget_at_16_bits(tmp_path):
    """A sample is read whole: float64 images and int64 ids of max_pixels (8000 x 8000, a 1 MB
    archive of deflated zeros) took 1.5 GiB for the pair. Each sample is held to
    ``max_inflated_bytes``, as a deflated DICOM; float32 of the budget, within it, is read."""
    limits = ImageLimits(max_pixels=512 * 512)  # max_inflated_bytes: 2 x 512 x 512 + 1 MiB
    labels = np.zeros((1, 512, 512), np.int32)
    labels[0, 10:20, 30:50] = 3
    _write_npz(tmp_path, np.zeros((1, 512, 512), np.float64), labels)
    with using_limits(limits), pytest.raises(SourceLayoutError) as refused:
        list(npz_masks.iter_outcomes(tmp_path, {"file": "cells.npz", "image_channel": 0, "label_channel": 0}))
    assert str(refused.value) == ("cells.npz: a X sample of (512, 512) float64 holds 2097152 bytes, over the 1572864 "
                                  "of max_pixels at 16 bits a pixel (max_inflated_bytes)")
    _write_npz(tmp_path, np.zeros((1, 512, 512), np.float32), labels)
    with using_limits(limits), cpu_seconds_limit(5):
        (row,) = npz_masks.iter_outcomes(tmp_path, {"file": "cells.npz", "image_channel": 0, "label_channel": 0})
    assert row["images"][0]["width"] == 512


# ---- masks: read a band of rows at a time --------------------------------------------------------

def _png(values: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_mask_read_in_bands_gives_the_ids_it_gave_whole(monkeypatch):
    """Colour-coded ids (red << 16 | green << 8 | blue), grey stored as colour read as its one
    channel, an alpha channel left out, and instances crossing the bands' edges kept whole."""
    monkeypatch.setattr(masks, "_BAND_PIXELS", 64)  # bands of 2 rows of these 32-wide masks
    colours = np.zeros((24, 32, 3), np.uint8)
    colours[1:20, 2:5] = (1, 2, 3)
    colours[5:9, 10:30] = (1, 2, 4)
    ids = masks._mask_pixels(_png(colours), ImageLimits())
    assert ids.dtype == np.uint32 and set(np.unique(ids)) == {0, 1 << 16 | 2 << 8 | 3, 1 << 16 | 2 << 8 | 4}
    assert masks.instance_boxes(_png(colours)) == [(2, 1, 5, 20), (10, 5, 30, 9)]
    with_alpha = np.dstack([colours, np.full((24, 32), 255, np.uint8)])
    assert masks.instance_boxes(_png(with_alpha)) == [(2, 1, 5, 20), (10, 5, 30, 9)]
    grey = np.zeros((24, 32), np.uint8)
    grey[3:17, 4:6], grey[0:2, 0:32] = 9, 200
    as_colour = masks._mask_pixels(_png(np.dstack([grey] * 3)), ImageLimits())
    assert as_colour.dtype == np.uint8 and np.array_equal(as_colour, grey)  # one band colour, the rest grey
    grey_ids = np.zeros((24, 32), np.uint16)
    grey_ids[3:17, 4:6] = 40000
    assert masks.instance_boxes(_png(grey_ids)) == [(4, 3, 6, 17)]
    floats = np.zeros((24, 32), np.float32)
    floats[20, 3] = 0.5  # in the last band
    with pytest.raises(ImageError, match="mask: values that are no instance ids"):
        masks.instance_boxes(_tiff(floats))


def _tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="TIFF")
    return buffer.getvalue()


def _paged_tiff(pages: int, entries_after_first: int = 8) -> bytes:
    """A 16 x 16 greyscale TIFF of ``pages`` directories, all of the same pixels (a 9,000-page one
    is 0.9 MB); past the first, each directory holds its first ``entries_after_first`` entries."""
    entries = [(256, 16), (257, 16), (258, 8), (259, 1), (262, 1), (273, 8), (278, 16), (279, 256)]

    def directory(fields, following: int) -> bytes:
        return (struct.pack("<H", len(fields)) + b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in fields)
                + struct.pack("<I", following))

    data, at = b"II*\x00" + struct.pack("<I", 8 + 256) + bytes(256), 8 + 256
    for page in range(pages):
        fields = entries if page == 0 else entries[:entries_after_first]
        size = 2 + 12 * len(fields) + 4
        data += directory(fields, at + size if page < pages - 1 else 0)
        at += size
    return data


def test_a_mask_of_many_pages_is_refused_from_its_second_without_walking_them_all():
    """PIL's page count reads every directory in Python: 9,000 pages (0.9 MB) took 0.6 s, and
    a 256 MiB file (within max_file_bytes) would take minutes. A page PIL cannot read raised a
    TypeError out of the mask reader, and the row was quarantined as a malformed record."""
    for data in (_paged_tiff(9000), _paged_tiff(2, entries_after_first=2)):
        with cpu_seconds_limit(0.3), pytest.raises(ImageError) as refused:
            masks.instance_boxes(data)
        assert (refused.value.reason, refused.value.detail) == (
            "image_undecodable", "mask: 2 pages or more; a mask is one plane of ids")
    assert masks.instance_boxes(_paged_tiff(1)) == []


_MASK_CHILD = """
import io, json, sys
import numpy as np
from PIL import Image
from medmo_pipeline.data.adapters.masks import instance_boxes
from medmo_pipeline.process_memory import current_rss_kib, peak_rss_kib, reset_peak_rss
colours = np.zeros((8000, 8000, 3), np.uint8)
colours[10:50, 10:50], colours[100:200, 100:300] = (1, 2, 3), (9, 8, 7)
buffer = io.BytesIO()
Image.fromarray(colours).save(buffer, format="PNG", compress_level=1)
data = buffer.getvalue()
del colours, buffer
assert reset_peak_rss()
before = current_rss_kib()
boxes = instance_boxes(data)
print(json.dumps({"boxes": boxes, "grew_mib": (peak_rss_kib() - before) // 1024, "bytes": len(data)}))
"""


def test_a_colour_coded_mask_of_the_pixel_budget_is_read_within_a_few_hundred_mib():
    """An 8000 x 8000 colour-coded PNG of two instances (187 KB) grew the process by 1,160 MiB:
    the decoded image, its bytes and the array at once, then a bool a sample and uint32 copies of
    each channel. Read a band at a time: the decoded image and the ids (about 530 MiB)."""
    done = subprocess.run([sys.executable, "-c", _MASK_CHILD], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["boxes"] == [[10, 10, 50, 50], [100, 100, 300, 200]] and result["bytes"] < 1 << 20
    assert result["grew_mib"] < 640, result


# ---- the shape a header declares, before the decode ----------------------------------------------

def _bmp(width: int, height: int, pixels: bytes) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, len(pixels), 0, 0, 0, 0)
    offset = 14 + len(info) + 1024
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + bytes(1024) + pixels


def test_a_shape_the_header_refuses_is_refused_before_the_decode():
    """A 1 KB BMP declaring 8 x 8,000,000 (rows top down) was decoded, 61 MiB, to be called
    truncated; the decoder called it too elongated. The sides and ratio are checked as the header
    declares them (an EXIF turn changes neither), so both say so."""
    data = _bmp(8, -8_000_000, bytes(64))
    assert _outcome(lambda: inspect_image(data)) == ("image_aspect_ratio", "8x8000000 exceeds 50.0:1")
    assert _outcome(lambda: model_image(data))[0] == "image_aspect_ratio"
    assert _outcome(lambda: inspect_image(_bmp(4, 4, bytes(16))))[0] == "image_too_small"


# ---- found bounded and named: kept so ------------------------------------------------------------

_ONE_CODE = bytes([1] + [0] * 15)  # a Huffman table of one 1-bit code


def _frame_only_jpeg(marker: int, side: int, precision: int = 8, restart: int | None = None) -> bytes:
    """A greyscale JPEG of ``side`` x ``side`` in the coding of SOF ``marker``, with 16 bytes of
    scan: the decoder fills what the data lacks."""
    head = (b"\xff\xd8" + _segment(0xDB, b"\x00" + b"\x01" * 64)
            + _segment(marker, struct.pack(">BHHB", precision, side, side, 1) + b"\x01\x11\x00")
            + _segment(0xC4, b"\x00" + _ONE_CODE + b"\x00") + _segment(0xC4, b"\x10" + _ONE_CODE + b"\x00"))
    if restart is not None:
        head += _segment(0xDD, struct.pack(">H", restart))
    return head + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + bytes(16) + b"\xff\xd9"


def _exif_jpeg(exif: bytes) -> bytes:
    data = plain_jpeg(64, 64)
    return data[:2] + _segment(0xE1, b"Exif\x00\x00" + exif) + data[2:]


_LOOPING_EXIF = (b"II*\x00" + struct.pack("<IH", 8, 5000) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)
                 + b"".join(struct.pack("<HHIHH", 0x9000 + index, 3, 1, 1, 0) for index in range(1, 5000))
                 + struct.pack("<I", 8))  # its next directory: itself
_HUGE_COUNT_EXIF = (b"II*\x00" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 0x0112, 3, 0xFFFFFFFF, 8)
                    + struct.pack("<HHII", 0x8769, 4, 1, 8) + struct.pack("<I", 8))


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: _frame_only_jpeg(0xC9, 2000), "kept"),  # arithmetic coding: libjpeg-turbo decodes it
    (lambda: _frame_only_jpeg(0xCA, 2000), "image_undecodable"),  # progressive arithmetic
    (lambda: _frame_only_jpeg(0xC3, 2000), "image_undecodable"),  # lossless
    (lambda: _frame_only_jpeg(0xC5, 2000), "image_undecodable"),  # hierarchical
    (lambda: _frame_only_jpeg(0xC1, 2000, precision=12), "image_undecodable"),  # 12-bit: PIL refuses at open
    (lambda: _frame_only_jpeg(0xC0, 2000, restart=1), "kept"),  # a restart marker expected every block
    (lambda: _frame_only_jpeg(0xC0, 65500), "image_too_large"),
    (lambda: _exif_jpeg(_LOOPING_EXIF), "kept"),
    (lambda: _exif_jpeg(_HUGE_COUNT_EXIF), "kept"),
    (lambda: plain_jpeg(64, 64)[:2] + b"".join(_segment(0xE2, b"ICC_PROFILE\x00" + bytes([index, 255]) + bytes(4000))
                                               for index in range(1, 256)) + plain_jpeg(64, 64)[2:], "kept"),
], ids=["arithmetic", "arithmetic-progressive", "lossless", "hierarchical", "12-bit", "restart-every-block",
        "65500-square", "exif-loop", "exif-huge-count", "icc-in-255-chunks"])
def test_jpeg_codings_and_metadata_are_settled_cheaply_and_alike_by_curation_and_the_decoder(make, reason):
    data = make()
    got, detail = _outcome(lambda: inspect_image(data))
    assert got == reason, detail
    assert _outcome(lambda: model_image(data))[0] == reason  # kept means the decoder reads it
    assert detail == "" or "Error" in detail or "pixels" in detail  # named by what failed


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM", "SGI"])
def test_formats_pil_reads_but_no_dataset_publishes_are_refused(fmt):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format=fmt)
    reason, detail = _outcome(lambda: inspect_image(buffer.getvalue()))
    assert reason == "image_undecodable" and "not an image in a format read here" in detail


def _frames_dicom(frames: bytes, pixels: int = 8192) -> bytes:
    elements = _image_elements(64, 64) + _element(0x0028, 0x0008, b"IS", frames)
    return _dicom_file(EXPLICIT, elements + _element(0x7FE0, 0x0010, b"OW", bytes(pixels)))


@pytest.mark.parametrize(("data", "says"), [
    (_frames_dicom(b"999999"), "image_too_large"),  # more pixels than the budget, in a few bytes
    (_frames_dicom(b"-5"), "'Number of Frames' value of '-5' is invalid"),
    (_frames_dicom(b"abc "), "invalid literal for int()"),
    (_frames_dicom(b"2\\3 "), "MultiValue"),
    (_dicom_file(EXPLICIT, _image_elements(64, 64) + _element(0x7FE0, 0x0010, b"OW", bytes(100))), "less than expected"),
    (bytes(128) + b"DICM", "no Rows/Columns"),
    (_dicom_file(EXPLICIT, _element(0x0004, 0x1130, b"CS", b"ROOT")), "no Rows/Columns"),  # a DICOMDIR
    (_dicom_file(EXPLICIT, _image_elements(64, 64, bits=8).replace(b"\x02\x00US\x02\x00\x01\x00",
                                                                  b"\x02\x00US\x02\x00\x04\x00")
                 + _element(0x7FE0, 0x0010, b"OB", bytes(64 * 64 * 4))), "'Samples per Pixel' value of '4'"),
], ids=["frames-over-budget", "frames-negative", "frames-text", "frames-multi-valued", "pixel-data-short",
        "preamble-only", "dicomdir", "samples-4"])
def test_dicom_headers_that_cannot_be_an_image_are_refused_naming_why(data, says):
    with cpu_seconds_limit(2):
        error = dicom_entry(data, path="ct/x.dcm")["error"]
    assert error.reason in ("image_undecodable", "image_too_large") and says in f"{error.reason} {error.detail}"
    assert error.detail.startswith("DICOM ct/x.dcm")


def test_a_dicom_nested_past_pythons_recursion_is_refused_not_crashed():
    sequence = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
    item, ends = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF), struct.pack("<HHIHHI", 0xFFFE, 0xE00D, 0,
                                                                             0xFFFE, 0xE0DD, 0)
    data = _dicom_file(EXPLICIT, _element(0x0008, 0x0016, b"UI", _uid("1.2.840.10008.5.1.4.1.1.7"))
                       + (sequence + item) * 5000 + ends * 5000)
    with cpu_seconds_limit(2):
        error = dicom_entry(data, path="ct/deep.dcm")["error"]
    assert error.reason == "image_undecodable" and "RecursionError" in error.detail

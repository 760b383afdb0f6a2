"""DICOM and high-bit-depth pixels as the modality means them: the file's VOI LUT or window first,
else a percentile window; never a saturated image."""

from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
import pytest
from hostile_files import ramp_tiff
from PIL import Image
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medmo_pipeline.data import pixels
from medmo_pipeline.data.images import ImageError, inspect_image
from medmo_pipeline.data.pixels import (
    dicom_entry,
    model_image,
    percentile_window,
    real_to_uint8,
    window_to_uint8,
)


def _dicom_bytes(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _pixels(entry: dict) -> np.ndarray:
    return np.asarray(model_image(entry["bytes"]))[..., 0]


def test_the_files_window_is_used_and_without_one_a_percentile_window_never_saturates():
    dataset = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    dataset.WindowCenter, dataset.WindowWidth = 40, 400
    windowed = _pixels(dicom_entry(_dicom_bytes(dataset), path="ct.dcm"))
    values = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    assert np.array_equal(windowed, window_to_uint8(values, 40, 400))
    del dataset.WindowCenter, dataset.WindowWidth
    plain = _pixels(dicom_entry(_dicom_bytes(dataset), path="ct.dcm"))
    assert (plain == 255).mean() < 0.02 and (plain == 0).mean() < 0.02 and plain.std() > 20


def test_a_voi_lut_takes_precedence_over_the_window():
    dataset = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    dataset.WindowCenter, dataset.WindowWidth = 40, 400
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUTDescriptor: 4096 entries from input 0, 16-bit output
    item.add_new(0x00283006, "US", [min(65535, value * 32) for value in range(4096)])  # LUTData: a steep ramp
    dataset.VOILUTSequence = Sequence([item])
    out = _pixels(dicom_entry(_dicom_bytes(dataset), path="ct.dcm"))
    rescaled = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    expected = np.minimum(np.clip(rescaled, 0, 4095) * 32, 65535) * 255 / 65535
    assert np.abs(out - expected).max() <= 1
    assert not np.array_equal(out, window_to_uint8(rescaled, 40, 400))


def test_monochrome1_is_inverted():
    dataset = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    dataset.WindowCenter, dataset.WindowWidth = 40, 400
    normal = _pixels(dicom_entry(_dicom_bytes(dataset)))
    dataset.PhotometricInterpretation = "MONOCHROME1"
    assert np.array_equal(_pixels(dicom_entry(_dicom_bytes(dataset))), 255 - normal)


def test_the_percentile_window_ignores_a_few_extreme_pixels():
    values = np.full((100, 100), 1000.0)
    values[:50] = 1100.0
    values[0, 0] = 65535.0  # one hot pixel
    center, width = percentile_window(values)
    assert 1000 <= center <= 1100 and width <= 100


def test_a_palette_colour_dicom_goes_through_its_palette():
    """Colour ultrasound is often PALETTE COLOR: one index per pixel and red/green/blue tables.
    Windowing the indices as grey levels gave a greyscale image of palette positions."""
    from pydicom.pixels import apply_color_lut

    dataset = pydicom.dcmread(get_testdata_files("OBXXXX1A.dcm")[0])
    out = np.asarray(model_image(dicom_entry(_dicom_bytes(dataset), path="us.dcm")["bytes"]))
    colour = np.asarray(apply_color_lut(dataset.pixel_array, dataset))
    expected = (colour >> 8 if colour.max() > 255 else colour).astype(np.uint8)
    assert out.shape == expected.shape == (600, 800, 3) and np.array_equal(out, expected)
    assert (out[..., 0] != out[..., 2]).mean() > 0.05  # colour, not grey


def test_colour_of_more_than_8_stored_bits_keeps_its_top_8_bits():
    """16-bit RGB holding 12-bit samples: cutting each to its low byte (as before) wrapped it."""
    dataset = pydicom.dcmread(get_testdata_files("SC_rgb.dcm")[0])
    eight = dataset.pixel_array.copy()
    twelve = eight.astype(np.uint16) * 16 + 7  # the same colours in 12 bits, low bits set
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelData = twelve.tobytes()
    out = np.asarray(model_image(dicom_entry(_dicom_bytes(dataset), path="rgb12.dcm")["bytes"]))
    assert np.array_equal(out, eight)


def test_a_rescale_that_cannot_be_applied_leaves_the_stored_values_windowed():
    """A slope of 0, NaN or infinity, or an intercept past float32, made every pixel one value: the
    image came out blank and was kept. The stored values are windowed by their percentiles instead."""
    dataset = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])  # no window of its own
    plain = _pixels(dicom_entry(_dicom_bytes(dataset), path="ct.dcm"))
    assert plain.std() > 20
    for slope, intercept in (("0", "0"), ("nan", "0"), ("inf", "0"), ("1", "1e308")):
        dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
        out = _pixels(dicom_entry(_dicom_bytes(dataset), path="ct.dcm"))
        assert np.array_equal(out, window_to_uint8(dataset.pixel_array.astype(np.float32),
                                                   *percentile_window(dataset.pixel_array.astype(np.float32)))), slope
        assert out.std() > 20, slope


RAMP = np.tile(np.linspace(0, 1, 64), (48, 1))


def _ramp_kept(pixels: np.ndarray) -> bool:
    """Whether a decoded horizontal ramp still climbs from dark to bright over many grey levels."""
    row = pixels[24].astype(int)
    return row[0] < 20 and row[-1] > 200 and np.all(np.diff(row) >= 0) and len(np.unique(row)) > 40


def test_real_valued_images_are_windowed_linearly_and_their_nan_and_inf_do_not_blank_them():
    """A float image of values 0-1 was a threshold (DICOM's integer window of width 1), one of 0-3
    lost its top third, and NaN or infinity made the window NaN: all black."""
    for values in (RAMP, RAMP * 3, np.where(RAMP > 0.9, np.inf, RAMP), np.where(np.arange(48)[:, None] > 40, np.nan, RAMP)):
        pixels = np.asarray(model_image(ramp_tiff(values.astype(np.float32), sample_format=3)))[..., 0]
        assert _ramp_kept(pixels[:40]), values.max()
    assert np.array_equal(real_to_uint8(np.array([np.nan, -np.inf, np.inf, 0.0, 1.0])), [0, 0, 255, 0, 255])
    dataset = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    dataset.FloatPixelData = RAMP.astype("<f4").tobytes()
    del dataset.PixelData, dataset.RescaleSlope, dataset.RescaleIntercept
    dataset.Rows, dataset.Columns, dataset.BitsAllocated = 48, 64, 32
    for tag in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(dataset, tag)
    assert _ramp_kept(_pixels(dicom_entry(_dicom_bytes(dataset))))


def test_an_8_bit_voi_lut_of_more_than_256_entries_is_not_wrapped_into_a_sawtooth():
    dataset = pydicom.dcmread(get_testdata_files("CT_small.dcm")[0])
    dataset.PixelData = (RAMP * 4000).astype("<u2").tobytes()
    dataset.Rows, dataset.Columns, dataset.RescaleSlope, dataset.RescaleIntercept = 48, 64, 1, 0
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 8])
    item.add_new(0x00283006, "US", list(np.linspace(0, 255, 4096).astype(int)))
    dataset.VOILUTSequence = Sequence([item])
    assert _ramp_kept(_pixels(dicom_entry(_dicom_bytes(dataset))))


def test_tiffs_pil_misreads_are_refused_or_read_as_stored():
    """16-bit samples in separate planes (PIL reads their bytes as 8-bit samples) and signed 8-bit
    samples (read as unsigned) are refused by curation and the decoder alike; a 16-bit WhiteIsZero
    image is inverted as its 8-bit form is."""
    for refused in (ramp_tiff((np.dstack([RAMP] * 3) * 4000).astype(np.uint16), planar=True),
                    ramp_tiff((RAMP * 200 - 100).astype(np.int8), sample_format=2)):
        for check in (inspect_image, model_image):
            with pytest.raises(ImageError, match="TIFF of"):
                check(refused)
    assert _ramp_kept(np.asarray(model_image(ramp_tiff((np.dstack([RAMP] * 3) * 255).astype(np.uint8), planar=True)))[..., 0])
    white_is_zero = np.asarray(model_image(ramp_tiff((RAMP * 4000).astype(np.uint16), photometric=0)))[..., 0]
    assert _ramp_kept(white_is_zero[:, ::-1])


def test_a_bmp_whose_alpha_bytes_are_all_zero_is_shown_opaque():
    """A 32-bit BMP with an alpha mask (a BITMAPV3 header) whose fourth bytes were left at 0, as
    writers leave them: over black it was black."""
    ramp = (RAMP * 255).astype(np.uint8)[::-1]  # bottom-up rows
    pixels = np.dstack([ramp, ramp, ramp, np.zeros_like(ramp)]).tobytes()
    info = struct.pack("<IiiHHIIiiII", 56, 64, 48, 1, 32, 3, len(pixels), 2835, 2835, 0, 0) \
        + struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000)
    bmp = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info)) + info + pixels
    assert Image.open(io.BytesIO(bmp)).mode == "RGBA"
    assert _ramp_kept(np.asarray(model_image(bmp))[..., 0])


@pytest.mark.parametrize(("dtype", "bits"), [(np.uint16, 12), (np.int16, 12), (np.uint16, 16), (np.uint8, 1),
                                             (np.uint8, 4), (np.int32, 32), (np.uint32, 24), (np.uint16, 10)])
def test_stored_bits_to_8_bits_band_by_band_in_a_narrow_type(monkeypatch, dtype, bits):
    """The same top 8 stored bits as one 64-bit pass over the whole image (which took 1 GB for a
    3000 x 3000 16-bit RGB DICOM), in bands of a few rows."""
    monkeypatch.setattr(pixels, "_BAND_SAMPLES", 100)
    info = np.iinfo(dtype)
    values = np.random.default_rng(bits).integers(info.min, info.max, (50, 40, 3), dtype=dtype, endpoint=True)
    whole = (values.astype(np.uint64) & ((1 << bits) - 1)) >> max(bits - 8, 0) << max(8 - bits, 0)
    for sample in (values, values[..., 0]):
        expected = whole if sample.ndim == 3 else whole[..., 0]
        assert np.array_equal(pixels.stored_to_uint8(sample, bits), expected.astype(np.uint8))

"""Pixels as the modality means them, against the reference implementations: pydicom's modality LUT
and VOI functions for DICOM, PIL's ``exif_transpose`` for orientation, numpy for stored values."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from hostile_files import ramp_tiff
from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.pixels import dicom_entry, model_image

RAMP = np.tile(np.linspace(0, 1, 40), (32, 1))


def _dicom(stored: np.ndarray, bits: int, signed: int = 0, photometric: str = "MONOCHROME2",
           **elements) -> bytes:
    """A single-frame greyscale DICOM of ``stored`` (16-bit allocated) with ``elements`` set."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
    dataset.Rows, dataset.Columns = stored.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, bits, bits - 1
    dataset.PixelRepresentation = signed
    for name, value in elements.items():
        setattr(dataset, name, value)
    dataset.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _seen(data: bytes) -> np.ndarray:
    entry = dicom_entry(data, path="x.dcm")
    assert entry["bytes"] is not None, entry.get("error")
    return np.asarray(model_image(entry["bytes"]))[..., 0].astype(int)


def _pydicom_8bit(data: bytes) -> np.ndarray:
    """pydicom's rescale then VOI function, its output range (BitsStored, unsigned) scaled to 0-255."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    shown = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    return np.rint(shown * 255 / (2 ** dataset.BitsStored - 1)).astype(int)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_the_files_voi_lut_function_shapes_its_window_as_pydicom_does(function):
    """A window whose VOILUTFunction is SIGMOID was drawn as a straight ramp (28 grey levels off,
    its tails clipped to black and white), and LINEAR_EXACT a grey level off."""
    data = _dicom((RAMP * 4095).astype(np.uint16), 12, WindowCenter=2000, WindowWidth=1000,
                  VOILUTFunction=function)
    seen = _seen(data)
    assert np.array_equal(seen, _pydicom_8bit(data))
    if function == "SIGMOID":  # a smooth S: nothing saturated in the middle band
        assert len(np.unique(seen)) > 20


def test_a_window_of_width_1_is_the_standards_threshold():
    """A binary image (0 and 1) with the window DICOM gives it (center 1, width 1: x > 0.5 is white)
    came out all black: the threshold was x > center."""
    data = _dicom((RAMP > 0.5).astype(np.uint16), 8, WindowCenter=1, WindowWidth=1)
    seen = _seen(data)
    assert np.array_equal(seen, np.where(RAMP > 0.5, 255, 0))
    assert np.array_equal(seen, _pydicom_8bit(data))


def test_a_flat_image_stays_black_and_monochrome1_white():
    """One value everywhere (a percentile window of no width) is shown flat: black, or white for
    MONOCHROME1, in DICOM and 16-bit PNG alike."""
    flat = np.full(RAMP.shape, 1000, np.uint16)
    assert (_seen(_dicom(flat, 12)) == 0).all()
    assert (_seen(_dicom(flat, 12, photometric="MONOCHROME1")) == 255).all()
    buffer = io.BytesIO()
    Image.fromarray(flat).save(buffer, format="PNG")
    assert (np.asarray(model_image(buffer.getvalue())) == 0).all()


@pytest.mark.parametrize("slope", ["0.0001", "0.01", "2.5"])
def test_a_fractional_rescale_without_a_window_is_not_thresholded_or_saturated(slope):
    """Stored 0-4095 with a slope of 0.0001 (PET, parametric MR) spans 0.4: DICOM's integer window
    over that percentile width was a threshold, a black and white image; 0.01 saturated 5% at white."""
    seen = _seen(_dicom((RAMP * 4095).astype(np.uint16), 12, RescaleSlope=slope, RescaleIntercept="0"))
    row = seen[0]
    assert row[0] < 10 and row[-1] > 245 and np.all(np.diff(row) >= 0) and len(np.unique(row)) > 35
    assert (seen == 255).mean() < 0.05


def test_a_signed_ct_windowed_and_high_garbage_bits_masked_as_pydicom_does():
    """Signed 13-bit CT stored with an intercept of -1024 and noise in its 3 unused bits: the bits are
    masked (sign-extended from bit 12) and the window applied to HU, as pydicom does."""
    stored = (RAMP * 3800 - 2000 + 1024).astype(np.int16)  # -976..2824: within 13 signed bits
    noisy = (stored.view(np.uint16) & 0x1FFF) | 0xA000  # garbage above BitsStored
    data = _dicom(noisy.view(np.int16), 13, signed=1, RescaleIntercept=-1024, RescaleSlope=1,
                  WindowCenter=40, WindowWidth=400)
    dataset = pydicom.dcmread(io.BytesIO(data))
    values = apply_modality_lut(dataset.pixel_array, dataset)
    assert np.array_equal(values, stored - 1024.0)
    expected = np.clip(np.rint(((values - 39.5) / 399 + 0.5) * 255), 0, 255)
    assert np.array_equal(_seen(data), expected)


def test_an_unsigned_32_bit_tiff_is_not_wrapped_through_pils_signed_mode():
    """PIL holds unsigned 32-bit samples in its signed 32-bit mode: a 0-4e9 ramp wrapped negative past
    2**31 and came out a sawtooth (dark again in its right half)."""
    seen = np.asarray(model_image(ramp_tiff((RAMP * 4e9).astype(np.uint32))))[..., 0].astype(int)
    row = seen[0]
    assert row[0] < 10 and row[-1] > 245 and np.all(np.diff(row) >= 0)


def _marked(fmt: str, orientation: int) -> bytes:
    pixels = np.zeros((24, 32, 3), np.uint8)
    pixels[:6, :10] = 255  # a corner mark, so a turn or flip shows
    pixels[..., 1] = np.linspace(0, 255, 32).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    lossless = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pixels).save(buffer, format=fmt, exif=exif.tobytes(), **lossless)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied_once_and_curation_sizes_what_the_model_sees(fmt):
    for orientation in range(1, 9):
        data = _marked(fmt, orientation)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
        seen = np.asarray(model_image(data))
        assert np.array_equal(seen, expected), orientation
        assert inspect_image(data)[:2] == (seen.shape[1], seen.shape[0]), orientation

"""CPU time and peak memory of the model's decoder at the pixel budget, for every kind of image
curation keeps.

Each case is a crafted, highly compressible file (zeros) of about ``ImageLimits.max_pixels``
(8000 x 8000 at the default budget; a WebP at its weighed budget, 4000 x 4000; a 16-bit RGB DICOM
at the file budget, 6500 x 6500). For each case and each decode path (``pixels.model_image``;
``model_images._model_ready``, which re-encodes what is not plain as 8-bit PNG;
``model_images._model_pixels``, the trainer's stream), a fresh subprocess reads the file, runs
curation's check (``images.inspect_image``: whether the file is kept at all), starts its peak RSS
again, then runs the decode once: the table gives its CPU seconds (all threads) and the growth of
the peak resident size over what the process held before the decode (the file's bytes included
in that base). DICOM is converted by the adapters (``pixels.dicom_entry``) to an 8-bit PNG, which
is what reaches the model: its rows measure that conversion and the model's decode of its output.

No assertions: tests/test_decoder_memory.py holds the worst cases to a memory and CPU cap.

    python benches/decoder_memory.py                       # every case, model_image and _model_ready
    python benches/decoder_memory.py --only png16_RGBA,tiff16_RGB --funcs model_image
    python benches/decoder_memory.py --side 2000           # a quick smoke run
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PIECE = 1 << 20


# ---- crafted files -------------------------------------------------------------------------------

def _deflated_zeros(count: int) -> bytes:
    """A zlib stream of ``count`` zero bytes, in a few KB whatever ``count``: one full-flushed piece
    of a MiB of zeros repeated (each piece ends on a byte boundary), then the rest."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(PIECE)) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = last.compress(bytes(count % PIECE)) + last.flush(zlib.Z_FINISH)
    adler = ((count % 65521) << 16) | 1  # zeros leave the low sum at 1, adding it to the high one each byte
    return b"\x78\xda" + piece * (count // PIECE) + tail + struct.pack(">I", adler)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_zeros(side: int, depth: int, colour: int, extra: bytes = b"") -> bytes:
    """A ``side`` x ``side`` PNG of zeros (filter 0 rows) of ``depth`` bits and PNG ``colour`` type."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row = 1 + side * channels * depth // 8
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, depth, colour, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + ihdr + extra + _chunk(b"IDAT", _deflated_zeros(row * side))
            + _chunk(b"IEND", b""))


def tiff_zeros(side: int, bits: int, samples: int, *, sample_format: int = 1, photometric: int | None = None,
               rows_per_strip: int = 64) -> bytes:
    """A ``side`` x ``side`` deflated TIFF of zeros: ``samples`` samples of ``bits`` bits a pixel,
    every strip the same few bytes."""
    photometric = (2 if samples >= 3 else 1) if photometric is None else photometric
    strip = zlib.compress(bytes(rows_per_strip * side * samples * bits // 8), 9)
    strips = -(-side // rows_per_strip)
    last = zlib.compress(bytes((side - (strips - 1) * rows_per_strip) * side * samples * bits // 8), 9)
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, samples, None), (259, 3, 1, 8),
               (262, 3, 1, photometric), (273, 4, strips, None), (277, 3, 1, samples),
               (278, 4, 1, rows_per_strip), (279, 4, strips, None), (284, 3, 1, 1), (339, 3, samples, None)]
    if samples in (2, 4):
        entries.append((338, 3, 1, 2))  # unassociated alpha
    entries.sort()
    directory_at = 8
    data_at = directory_at + 2 + 12 * len(entries) + 4
    arrays = {258: struct.pack(f"<{samples}H", *[bits] * samples),
              339: struct.pack(f"<{samples}H", *[sample_format] * samples)}
    layout = bytearray()
    at = {}
    for tag in (258, 339):
        at[tag] = data_at + len(layout)
        layout += arrays[tag] + b"\0" * (len(arrays[tag]) % 2)
    at[279] = data_at + len(layout)
    layout += struct.pack(f"<{strips}I", *[len(strip)] * (strips - 1), len(last))
    at[273] = data_at + len(layout)
    first = at[273] + 4 * strips
    offsets = [first + index * len(strip) for index in range(strips)]
    layout += struct.pack(f"<{strips}I", *offsets)
    directory = bytearray(struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if value is None:
            small = {3: 2, 4: 4}[kind] * count <= 4
            one = {273: offsets[0], 279: len(last)}.get(tag) or struct.unpack("<H", arrays.get(tag, bytes(2))[:2])[0]
            value = one if small else at[tag]
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else struct.pack("<I", value)
        directory += struct.pack("<HHI", tag, kind, count) + packed
    directory += b"\0\0\0\0"
    return b"II*\0" + struct.pack("<I", directory_at) + bytes(directory) + bytes(layout) \
        + strip * (strips - 1) + last


def _pil(side: int, mode: str, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (side, side)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _dicom(rows: int, columns: int, samples: int) -> bytes:
    sys.path.insert(0, str(ROOT / "tests"))
    from hostile_files import _dicom_file, _element, _image_elements

    frame = bytes(rows * columns * samples * 2)
    return _dicom_file("1.2.840.10008.1.2.1", _image_elements(rows, columns, samples=samples)
                       + _element(0x7FE0, 0x0010, b"OW", frame))


def _webp(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="WEBP", lossless=True, method=0)
    return buffer.getvalue()


def cases(side: int) -> dict[str, tuple[str, Callable[[], bytes]]]:
    """Name -> (file suffix, builder) of every kind curation keeps, at ``side`` x ``side``."""
    palette = _chunk(b"PLTE", bytes(range(256)) * 3)
    webp_side = side // 2  # WEBP_PIXEL_WEIGHT = 4
    rgb_dicom = int(side * 6500 / 8000)  # 16-bit RGB native: the file budget (256 MiB) binds first
    return {
        "png8_L": (".png", lambda: png_zeros(side, 8, 0)),
        "png8_LA": (".png", lambda: png_zeros(side, 8, 4)),
        "png8_RGB": (".png", lambda: png_zeros(side, 8, 2)),
        "png8_RGBA": (".png", lambda: png_zeros(side, 8, 6)),
        "png8_P": (".png", lambda: png_zeros(side, 8, 3, palette)),
        "png8_P_tRNS": (".png", lambda: png_zeros(side, 8, 3, palette + _chunk(b"tRNS", b"\x80" * 256))),
        "png16_L": (".png", lambda: png_zeros(side, 16, 0)),
        "png16_LA": (".png", lambda: png_zeros(side, 16, 4)),
        "png16_RGB": (".png", lambda: png_zeros(side, 16, 2)),
        "png16_RGBA": (".png", lambda: png_zeros(side, 16, 6)),
        "jpeg_L": (".jpg", lambda: _pil(side, "L", "JPEG", quality=50)),
        "jpeg_RGB": (".jpg", lambda: _pil(side, "RGB", "JPEG", quality=50)),
        "jpeg_CMYK": (".jpg", lambda: _pil(side, "CMYK", "JPEG", quality=50)),
        "tiff8_L": (".tif", lambda: tiff_zeros(side, 8, 1)),
        "tiff8_RGB": (".tif", lambda: tiff_zeros(side, 8, 3)),
        "tiff8_RGBA": (".tif", lambda: tiff_zeros(side, 8, 4)),
        "tiff16_L": (".tif", lambda: tiff_zeros(side, 16, 1)),
        "tiff16_L_WhiteIsZero": (".tif", lambda: tiff_zeros(side, 16, 1, photometric=0)),
        "tiff16_RGB": (".tif", lambda: tiff_zeros(side, 16, 3)),
        "tiff16_RGBA": (".tif", lambda: tiff_zeros(side, 16, 4)),
        "tiff32_I_unsigned": (".tif", lambda: tiff_zeros(side, 32, 1)),
        "tiff32_I_signed": (".tif", lambda: tiff_zeros(side, 32, 1, sample_format=2)),
        "tiff32_F": (".tif", lambda: tiff_zeros(side, 32, 1, sample_format=3)),
        "bmp24": (".bmp", lambda: _pil(side, "RGB", "BMP")),
        "bmp32": (".bmp", lambda: _pil(side, "RGBA", "BMP")),
        "gif": (".gif", lambda: _pil(side, "P", "GIF")),
        "webp": (".webp", lambda: _webp(webp_side)),
        "dicom16_mono": (".dcm", lambda: _dicom(side, side, 1)),
        "dicom16_RGB": (".dcm", lambda: _dicom(rgb_dicom, rgb_dicom, 3)),
    }


# ---- the measured child ---------------------------------------------------------------------------

_CHILD = r"""
import json, resource, sys
from pathlib import Path
from medmo_pipeline.data.image_limits import ImageError
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.data.model_images import _model_pixels, _model_ready
from medmo_pipeline.data.pixels import dicom_entry, model_image
from medmo_pipeline.process_memory import current_rss_kib, peak_rss_kib, reset_peak_rss
import pydicom.pixels  # as a job has it imported by the time it reads its files

path, func = Path(sys.argv[1]), sys.argv[2]
data = path.read_bytes()
kept = "kept" if func != "dicom_entry" else "(the adapter)"
if path.suffix == ".dcm":  # the adapter converts it: what reaches the model is its PNG
    if func != "dicom_entry":
        entry = dicom_entry(data, path=path.name)
        data = entry["bytes"] if entry["bytes"] is not None else data
        kept = "converted" if entry["bytes"] is not None else f"refused: {entry['error'].reason}"
else:
    try:
        inspect_image(data)
    except ImageError as error:
        kept = f"refused: {error.reason}"

runs = {"model_image": lambda: model_image(data, path=path.name),
        "_model_ready": lambda: _model_ready({"bytes": data, "path": path.name}),
        "_model_pixels": lambda: _model_pixels({"bytes": data, "path": path.name}),
        "dicom_entry": lambda: dicom_entry(data, path=path.name)}
reset_peak_rss()
before = current_rss_kib()
start = resource.getrusage(resource.RUSAGE_SELF)
outcome = "decoded"
try:
    result = runs[func]()
    if isinstance(result, dict) and result.get("error") is not None:
        outcome = f"refused: {result['error'].reason}"
except ImageError as error:
    outcome = f"refused: {error.reason}"
end = resource.getrusage(resource.RUSAGE_SELF)
cpu = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
print(json.dumps({"kept": kept, "outcome": outcome, "cpu_s": cpu, "peak_mib": (peak_rss_kib() - before) / 1024,
                  "base_mib": before / 1024}))
"""


def measure(path: Path, func: str) -> dict:
    """One decode of ``path`` by ``func`` in a fresh subprocess."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), func], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=600)
    if done.returncode != 0:
        return {"kept": "?", "outcome": f"child failed rc={done.returncode}: {done.stderr.strip()[-200:]}",
                "cpu_s": float("nan"), "peak_mib": float("nan"), "base_mib": float("nan")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=8000, help="side of the square images (8000: the budget)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--funcs", default="model_image,_model_ready",
                        help="comma-separated: model_image, _model_ready, _model_pixels")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    chosen = cases(args.side)
    if args.only:
        chosen = {name: chosen[name] for name in args.only.split(",")}
    funcs = args.funcs.split(",")
    print(f"{'case':<22} {'pixels':>10} {'file KB':>9} {'curation':<26} {'decode':<14} {'outcome':<26} "
          f"{'CPU s':>6} {'peak MiB':>9}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (suffix, build) in chosen.items():
            data = build()
            path = Path(folder) / f"{name}{suffix}"
            path.write_bytes(data)
            with Image.open(io.BytesIO(data)) if suffix != ".dcm" else _nothing() as image:
                size = image.size if image is not None else None
            pixels = size[0] * size[1] if size else _dicom_pixels(name, args.side)
            del data
            for func in (["dicom_entry", *funcs] if suffix == ".dcm" else funcs):
                got = measure(path, func)
                results.append({"case": name, "pixels": pixels, "file_bytes": path.stat().st_size, "func": func,
                                **got})
                print(f"{name:<22} {pixels:>10} {path.stat().st_size // 1024:>9} {got['kept'][:26]:<26} "
                      f"{func:<14} {got['outcome'][:26]:<26} {got['cpu_s']:>6.2f} {got['peak_mib']:>9.0f}",
                      flush=True)
            path.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _dicom_pixels(name: str, side: int) -> int:
    return side * side if name == "dicom16_mono" else int(side * 6500 / 8000) ** 2


if __name__ == "__main__":
    main()

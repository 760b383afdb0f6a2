"""Many images at once: ``images.verify_png``'s checks over a whole batch of PNGs, and each image's
sha256, with the C work spread over a few threads.

The batch's bytes sit in one Arrow buffer. numpy reads every header and walks every chunk layout
over that buffer at once (``_layout``); then one task per image, run on ``check_threads()``
threads, hashes the image and, for a PNG the walk accepted, checks its chunks' CRC-32s and inflates
its pixel stream within its declared size (``images.pixel_stream_fault``). zlib, libdeflate and
hashlib run without the GIL, so the tasks share the cores; each image is read by one task, and the
Python between the C calls is a few lines per image.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from deflate import crc32 as _crc32  # libdeflate's CRC-32: the same values as zlib's, faster
from PIL import Image

from medmo_pipeline.data.image_limits import ImageLimits
from medmo_pipeline.data.images import (
    APNG_KINDS,
    EXIF_KIND,
    PIL_LEAST_LENGTH,
    PLTE_MOST_ENTRIES,
    PNG_CHANNELS,
    PNG_DEPTHS,
    PNG_HEADER_END,
    PNG_SIGNATURE,
    TEXT_KINDS,
    TRNS_LEAST_LENGTH,
    TRNS_MOST_PALETTE,
    WHOLE_INFLATE_LIMIT,
    pixel_stream_fault,
    whole_stream_fault,
)

_SIGNATURE_BYTES = np.frombuffer(PNG_SIGNATURE, dtype=np.uint8)
_IHDR_TYPE, _IDAT_TYPE, _IEND_TYPE = (int.from_bytes(kind, "big") for kind in (b"IHDR", b"IDAT", b"IEND"))
_IEND_CRC = _crc32(b"IEND")
_PLTE_TYPE = int.from_bytes(b"PLTE", "big")
_CHUNK_TYPE_BYTE = np.zeros(256, dtype=bool)  # the bytes of a chunk type PIL reads: letters, digits, '_'
_CHUNK_TYPE_BYTE[[*range(ord("0"), ord("9") + 1), *range(ord("A"), ord("Z") + 1), *range(ord("a"), ord("z") + 1),
                  ord("_")]] = True
# Chunks PIL reads beside the pixels (text, ICC, EXIF: an orientation may turn the image; APNG's
# frames), which ``inspect_image`` weighs
_LEFT_TO_INSPECT = np.array([int.from_bytes(kind, "big") for kind in (*TEXT_KINDS, EXIF_KIND, *APNG_KINDS)],
                            dtype=np.int64)
# (chunk type, the least length PIL reads) of the chunks it refuses when short (tRNS: by colour type, below)
_LEAST = [(int.from_bytes(kind, "big"), least) for kind, least in PIL_LEAST_LENGTH.items()]
_TRNS_TYPE = int.from_bytes(b"tRNS", "big")
_TRNS_LEAST = np.zeros(256, dtype=np.int64)  # by colour type
for _colour, _least in TRNS_LEAST_LENGTH.items():
    _TRNS_LEAST[_colour] = _least
_DEPTH_OK = np.zeros((256, 256), dtype=bool)  # [colour type, bit depth]
for _colour, _depths in PNG_DEPTHS.items():
    _DEPTH_OK[_colour, list(_depths)] = True
_CHANNELS = np.zeros(256, dtype=np.int64)  # by colour type
for _colour, _channels in PNG_CHANNELS.items():
    _CHANNELS[_colour] = _channels
MAX_CHUNK_STEPS = 64  # chunks walked for the whole batch; a PNG with more is left to ``inspect_image``


def check_pngs(images: pa.BinaryArray, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok, width, height) for a batch of image bytes: ``ok[i]`` when image i is a PNG that
    ``inspect_image`` accepts, with the same size. False means "not settled here" (another format,
    a damaged or out-of-limits PNG, or one with very many chunks): ``inspect_image`` decides that
    image and says why.

    The same checks as ``verify_png`` and ``inspect_image``, for the whole batch at once: header
    fields, limits and the chunk layout with numpy over the batch's one data buffer (the IHDR's
    CRC-32 once per distinct header), then per PNG the other chunks' CRC-32s (the usual empty IEND
    has a known CRC) and its pixel stream inflated by
    ``pixel_stream_fault``. A PNG with text, ICC or EXIF chunks, before or after its pixels (the walk
    reads every chunk up to IEND), is left to ``inspect_image``. Only the sizes of accepted PNGs are
    set (0 elsewhere: the bytes at a PNG's size fields mean nothing in another format).
    """
    _, ok, width, height = _checked(images, limits, hashing=False)
    return ok, width, height


def hashed_pngs(images: pa.BinaryArray, limits: ImageLimits = ImageLimits(),
                threads: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(sha256 hex digests, ok, width, height): every image's hash, and ``check_pngs`` of the batch,
    from one task per image (each image read once, on one thread), on ``threads`` threads
    (``check_threads()`` by default). ``images`` holds no nulls."""
    if images.null_count:
        raise ValueError(f"{images.null_count} null images among the bytes to hash")
    return _checked(images, limits, hashing=True, threads=threads)


@dataclass
class _Layout:
    """Where each PNG's checksummed chunk bodies and pixel stream lie in the buffer: the CRC spans
    of image i still to check (its chunks after IHDR, but for a usual IEND) are
    ``crc_low/high/expected[crc_first[i]:crc_first[i + 1]]``, its IDAT payloads
    ``pixel_low/high[pixel_first[i]:pixel_first[i + 1]]``, in file order; ``header`` holds the
    IHDR fields ``pixel_stream_fault`` takes (width, height, depth, colour type, interlace), one
    list per field; ``expected`` and ``stride`` what ``pixel_stream_fault`` computes from them for
    the usual image (non-interlaced, its stream small enough to inflate whole), computed here for
    the whole batch at once."""

    crc_first: list[int]
    crc_low: list[int]
    crc_high: list[int]
    crc_expected: list[int]
    pixel_first: list[int]
    pixel_low: list[int]
    pixel_high: list[int]
    header: tuple[list[int], ...]
    expected: list[int]  # the filtered size of a non-interlaced image (stride x height); 0: see pixel_stream_fault
    stride: list[int]  # its scanline's bytes, filter byte included


def _checked(images: pa.BinaryArray, limits: ImageLimits, *, hashing: bool,
             threads: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    count = len(images)
    ok, width, height = np.zeros(count, dtype=bool), np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    if not count:
        return [], ok, width, height
    offsets, view = binary_layout(images)
    layout = None
    if not (limits.decode_png or images.null_count or not view):
        layout = _layout(np.frombuffer(view, dtype=np.uint8), offsets, ok, width, height, limits)
    hashes: list[str] = [""] * count if hashing else []
    start, end, settled = offsets[:-1].tolist(), offsets[1:].tolist(), ok.tolist()
    sha256, crc32 = hashlib.sha256, _crc32
    widths, heights, depths, colours, interlaced = layout.header if layout else ((),) * 5

    def faulty(image: int) -> bool:
        """Hash image ``image`` (when hashing); whether it is a PNG the walk accepted whose CRCs or
        pixel stream are wrong."""
        if hashing:
            hashes[image] = sha256(view[start[image]:end[image]]).hexdigest()
        if not settled[image]:
            return False
        for k in range(layout.crc_first[image], layout.crc_first[image + 1]):
            if crc32(view[layout.crc_low[k]:layout.crc_high[k]]) != layout.crc_expected[k]:
                return True
        first, stop = layout.pixel_first[image], layout.pixel_first[image + 1]
        expected = layout.expected[image]
        if expected and stop - first == 1:  # the usual PNG: one IDAT, inflated whole (same checks)
            fault = whole_stream_fault(view, ((layout.pixel_low[first], layout.pixel_high[first]),), expected,
                                       layout.stride[image])
            if fault is not None:
                return bool(fault)
        spans = list(zip(layout.pixel_low[first:stop], layout.pixel_high[first:stop]))
        return bool(pixel_stream_fault(view, spans, widths[image], heights[image], depths[image], colours[image],
                                       interlaced[image]))

    tasks = list(range(count)) if hashing else np.flatnonzero(ok).tolist()
    faults = in_threads(faulty, tasks, threads=threads)
    ok[np.asarray(tasks, dtype=np.int64)[np.asarray(faults, dtype=bool)]] = False
    width[~ok], height[~ok] = 0, 0
    return hashes, ok, width, height


def binary_layout(images: pa.BinaryArray) -> tuple[np.ndarray, memoryview]:
    """A binary array's value offsets (int64, ``len(images) + 1`` of them, into the whole buffer)
    and a view of its data buffer, read in place."""
    _, offsets, buffer = images.buffers()
    width = np.int64 if pa.types.is_large_binary(images.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=width)[images.offset:images.offset + len(images) + 1].astype(np.int64)
    return offsets, memoryview(buffer) if buffer is not None else memoryview(b"")


def _layout(data: np.ndarray, offsets: np.ndarray, ok: np.ndarray, width: np.ndarray, height: np.ndarray,
            limits: ImageLimits) -> _Layout:
    """Read every header and walk every chunk layout at once: set ``ok`` (a PNG whose header, limits
    and chunk layout pass; its CRCs and pixel stream are still to check), ``width`` and ``height``
    in place; return where the PNGs still ``ok`` have their CRC spans and pixel streams."""
    count = len(ok)
    start, end = offsets[:-1], offsets[1:]

    # The signature and IHDR: fields, limits, and where the IHDR's CRC is (an image over
    # max_file_bytes is left to ``inspect_image``, which refuses it)
    ok[:] = (end - start >= PNG_HEADER_END) & (end - start <= limits.max_file_bytes)
    first = np.flatnonzero(ok)
    head = data[start[first, None] + np.arange(PNG_HEADER_END)]
    w, h = _be32(head, 16), _be32(head, 20)
    pixels = w * h
    fine = ((head[:, :8] == _SIGNATURE_BYTES).all(axis=1) & (_be32(head, 8) == 13) & (_be32(head, 12) == _IHDR_TYPE)
            & (w > 0) & (w < 2**31) & (h > 0) & (h < 2**31) & _DEPTH_OK[head[:, 25], head[:, 24]]
            & (head[:, 26] == 0) & (head[:, 27] == 0) & (head[:, 28] <= 1)
            & (pixels <= limits.max_pixels) & (np.minimum(w, h) >= limits.min_side)
            & (np.maximum(w, h) <= limits.max_aspect_ratio * np.minimum(w, h)))
    if Image.MAX_IMAGE_PIXELS:
        fine &= pixels <= Image.MAX_IMAGE_PIXELS
    ok[first] = fine
    width[first[fine]], height[first[fine]] = w[fine], h[fine]
    header = np.zeros((count, 5), dtype=np.int64)  # width, height, depth, colour type, interlace
    header[first[fine]] = np.column_stack([w[fine], h[fine], head[fine][:, [24, 25, 28]]])
    colour_type = header[:, 3]
    ok[first[fine][~_ihdr_crcs_match(head[fine])]] = False
    crcs = [(np.zeros(0, np.int64),) * 4]  # (image, start, stop, expected CRC) of each chunk after IHDR

    # The chunks after IHDR, one step per chunk for every PNG still walking, up to its IEND; as in
    # ``images._structure_fault``, the pixels are the first run of IDATs, a palette image's PLTE
    # comes first, and each chunk type is one PIL reads
    position, walking, has_pixels = start + PNG_HEADER_END, ok.copy(), np.zeros(count, dtype=bool)
    pixels_ended, palette = np.zeros(count, dtype=bool), colour_type != 3
    spans = [(np.zeros(0, np.int64),) * 3]  # (image, start, stop) of each IDAT payload
    # IHDR and the chunks walked stay within limits.max_chunks (``verify_png``'s count): a PNG with
    # more is left open, and ``inspect_image`` refuses it
    for _ in range(min(MAX_CHUNK_STEPS, limits.max_chunks - 1)):
        at = np.flatnonzero(walking)
        if not len(at):
            break
        here, stop_at = position[at], end[at]
        room = here + 12 <= stop_at
        ok[at[~room]] = False  # ends without an IEND
        at, here, stop_at = at[room], here[room], stop_at[room]
        chunk = data[here[:, None] + np.arange(12)]  # length, type, and an empty chunk's CRC
        length, kind = _be32(chunk, 0), _be32(chunk, 4)
        stop = here + 12 + length
        room = stop <= stop_at
        ok[at[~room]] = False  # a chunk cut short
        at, here, stop, length, kind, chunk = at[room], here[room], stop[room], length[room], kind[room], chunk[room]
        known = (kind == _IEND_TYPE) & (length == 0) & (_be32(chunk, 8) == _IEND_CRC)
        tail = stop[~known, None] - 4 + np.arange(4)
        crcs.append((at[~known], here[~known] + 4, stop[~known] - 4, _be32(data[tail], 0)))
        pixels_here = kind == _IDAT_TYPE
        read = pixels_here & ~pixels_ended[at]
        spans.append((at[read], here[read] + 8, stop[read] - 4))
        pixels_ended[at] |= ~pixels_here & has_pixels[at]
        long_palette = (kind == _PLTE_TYPE) & (colour_type[at] == 3) & (length // 3 > PLTE_MOST_ENTRIES)
        ok[at[~_CHUNK_TYPE_BYTE[chunk[:, 4:8]].all(axis=1) | (kind == _IHDR_TYPE) | (pixels_here & ~palette[at])
              | (long_palette & ~has_pixels[at])]] = False
        has_pixels[at] |= pixels_here
        palette[at] |= kind == _PLTE_TYPE
        ok[at[np.isin(kind, _LEFT_TO_INSPECT)]] = False
        ok[at[_short_ancillary(kind, length, colour_type[at])]] = False  # inspect_image says why
        position[at] = stop
        walking &= ok
        walking[at[kind == _IEND_TYPE]] = False
    ok &= has_pixels & ~walking  # an IDAT, and an IEND reached within the steps

    crc_first, crc_low, crc_high, crc_expected = _grouped(crcs, ok)
    pixel_first, pixel_low, pixel_high = _grouped(spans, ok)
    width_, height_, depth, colour, interlace = header.T
    stride = 1 + (width_ * depth * _CHANNELS[colour] + 7) // 8
    expected = np.where((interlace == 0) & (height_ * stride <= WHOLE_INFLATE_LIMIT), height_ * stride, 0)
    return _Layout(crc_first, crc_low, crc_high, crc_expected, pixel_first, pixel_low, pixel_high,
                   tuple(field.tolist() for field in header.T), expected.tolist(), stride.tolist())


def _short_ancillary(kind: np.ndarray, length: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per chunk, whether PIL refuses it (``images._ancillary_fault``): shorter than the least
    length of its type, or a palette's tRNS of more than 256 entries."""
    least = np.zeros(len(kind), dtype=np.int64)
    for chunk_type, chunk_least in _LEAST:
        least[kind == chunk_type] = chunk_least
    transparency = kind == _TRNS_TYPE
    least[transparency] = _TRNS_LEAST[colour[transparency]]
    return (length < least) | (transparency & (colour == 3) & (length > TRNS_MOST_PALETTE))


def _ihdr_crcs_match(head: np.ndarray) -> np.ndarray:
    """Per PNG (rows of ``head``: its first ``PNG_HEADER_END`` bytes), whether its IHDR's CRC-32 is
    right; computed once per distinct IHDR (a dataset's images share a few sizes and depths)."""
    body = np.ascontiguousarray(head[:, 12:29])  # the chunk type and its 13 bytes of data
    distinct, inverse = np.unique(body.view(np.dtype((np.void, body.shape[1]))).ravel(), return_inverse=True)
    crcs = np.array([_crc32(bytes(value)) for value in distinct], dtype=np.int64)
    return crcs[inverse.ravel()] == _be32(head, 29)


def _grouped(parts: list[tuple[np.ndarray, ...]], ok: np.ndarray) -> list[list[int]]:
    """The rows of ``parts`` ((image, value columns...) per chunk step) of the images still ``ok``,
    grouped by image in file order: [first row of each image (and one past the last), columns...]."""
    image, *columns = (np.concatenate(column) for column in zip(*parts))
    kept = ok[image]
    image, columns = image[kept], [column[kept] for column in columns]
    order = np.argsort(image, kind="stable")  # steps run in file order: stable keeps it per image
    first = np.searchsorted(image[order], np.arange(len(ok) + 1))
    return [first.tolist(), *(column[order].tolist() for column in columns)]


def in_threads(function, items: list, *, chunk: int = 64, threads: int | None = None) -> list:
    """``[function(item) for item in items]``, spread over ``threads`` threads (``check_threads()``
    by default) for a long list: meant for C calls that release the GIL (zlib's inflate, hashlib
    over a few KiB and more), which then run on several cores while Python walks the list (on this
    thread when there is one). The Python between those calls still takes turns on the GIL:
    ``image_check_workers`` runs large batches on processes instead."""
    if len(items) < 2 * chunk or (threads or check_threads()) == 1:
        return [function(item) for item in items]
    pieces = [items[start:start + chunk] for start in range(0, len(items), chunk)]
    return [result for part in _pool().map(lambda piece: [function(item) for item in piece], pieces)
            for result in part]


_POOL: list = []  # (pid, executor): threads do not survive a fork, so a forked child makes its own
MAX_CHECK_THREADS = 8  # a batch's images are shared out 64 at a time: more threads than this sit idle


def check_threads() -> int:
    """How many threads ``in_threads`` runs on: the cores this process may use (its CPU affinity,
    so ``taskset`` limits it too), at most ``MAX_CHECK_THREADS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_CHECK_THREADS, cores))


def _pool():
    from concurrent.futures import ThreadPoolExecutor

    if not _POOL or _POOL[0][0] != os.getpid():
        _POOL[:] = [(os.getpid(), ThreadPoolExecutor(max_workers=check_threads(), thread_name_prefix="image-checks"))]
    return _POOL[0][1]


def _be32(matrix: np.ndarray, column: int) -> np.ndarray:
    """The big-endian 32-bit numbers at ``column`` ... ``column + 3`` of each row of a byte matrix."""
    return np.ascontiguousarray(matrix[:, column:column + 4]).view(">u4")[:, 0].astype(np.int64)

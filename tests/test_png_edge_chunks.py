"""Rare PNG layouts decided as the training decoder reads them, on the row path (a 3-row curate) and
on the batch path (a curate large enough for the image-check workers): text and ICC chunks PIL's
reader refuses are quarantined naming the chunk, an interlaced image's reduced rows have their
filter types checked, an orientation carried after the pixel data sizes the image as the decoder
turns it, and ordinary interlaced PNGs are kept. Every kept image decodes to its recorded size."""

from __future__ import annotations

import io
import warnings
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import png_bytes
from hostile_files import chunk
from PIL import Image
from png_edge_files import (
    adam7_rows,
    grey_idat,
    interlaced_png,
    interlaced_pngs,
    late_oriented_pngs,
    png,
    refused_pngs,
)

from medmo_pipeline.data import image_check_workers, images, shards
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.images import ImageError, inspect_image, verify_png
from medmo_pipeline.data.pixels import model_image
from medmo_pipeline.data.png_batch import check_pngs


def _cases() -> dict[str, tuple[bytes, str | tuple[int, int]]]:
    """Each case's bytes and what curation must make of it: the chunk its refusal names, or the
    size it is kept at (the decoder's)."""
    cases: dict[str, tuple[bytes, str | tuple[int, int]]] = dict(refused_pngs())
    cases.update({name: (data, (24, 48)) for name, data in late_oriented_pngs().items()})
    cases.update({f"interlaced {name}": (data, (37, 29)) for name, data in interlaced_pngs().items()})
    return cases


CASES = _cases()


def _row(index: int, data: bytes, path: str) -> dict:
    return {"id": f"r{index}", "split": "train", "task": "vqa", "modality": "xray",
            "images": [{"bytes": data, "path": path, "width": None, "height": None}],
            "messages": [{"role": "user", "content": f"Is there a lesion {index}?"},
                         {"role": "assistant", "content": "yes"}],
            "answer": "yes", "choices": [], "boxes": [], "license": "CC0"}


def _curated(rows: list[dict], out) -> tuple[dict[str, dict], dict[str, dict]]:
    """Curate ``rows``: (kept rows by input id, quarantine records by input id)."""
    report = curate(rows, out, source="edge", shard_rows=1000)
    kept = {row["id"].split(":", 1)[1]: row for row in shards.iter_rows(out)}
    quarantined = {item["row_id"]: item for item in pq.read_table(report["quarantine_path"]).to_pylist()}
    assert report["accounted"] and len(kept) + len(quarantined) == len(rows)
    return kept, quarantined


def _assert_decided(name: str, expected, row_id: str, kept: dict, quarantined: dict) -> None:
    if isinstance(expected, str):  # refused, naming the chunk (or the pixel data) and the file
        assert row_id not in kept, name
        record = quarantined[row_id]
        assert record["reason"] == "image_undecodable", (name, record)
        assert expected in record["detail"] and f"{row_id}.png" in record["detail"], (name, record["detail"])
    else:  # kept at the decoder's size
        assert row_id in kept, (name, quarantined.get(row_id))
        _assert_decodes_as_recorded(kept[row_id], name)
        assert (kept[row_id]["images"][0]["width"], kept[row_id]["images"][0]["height"]) == expected, name


def _assert_decodes_as_recorded(row: dict, name: str) -> None:
    for entry in row["images"]:
        assert model_image(entry["bytes"], path=entry["path"]).size == (entry["width"], entry["height"]), name


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_on_the_row_path(name, tmp_path):
    data, expected = CASES[name]
    rows = [_row(0, png_bytes(seed=1), "r0.png"), _row(1, data, "r1.png"), _row(2, png_bytes(seed=2), "r2.png")]
    kept, quarantined = _curated(rows, tmp_path / "out")
    _assert_decided(name, expected, "r1", kept, quarantined)
    assert {"r0", "r2"} <= kept.keys()
    for row in kept.values():
        _assert_decodes_as_recorded(row, name)


def test_every_case_on_the_batch_path(tmp_path, monkeypatch):
    """All the cases, each at three places among ordinary PNGs, in a batch the workers check."""
    submitted, reference = [], image_check_workers.submit
    monkeypatch.setattr(image_check_workers, "submit",
                        lambda *args, **kw: submitted.append(reference(*args, **kw)) or submitted[-1])
    count = max(600, image_check_workers.MIN_POOL_IMAGES + 3 * len(CASES) + 10)
    placed = {index: name for k, name in enumerate(CASES) for index in (3 + k, 200 + 3 * k, count - 1 - k)}
    rows = [_row(index, CASES[placed[index]][0] if index in placed else png_bytes(seed=index), f"r{index}.png")
            for index in range(count)]
    kept, quarantined = _curated(rows, tmp_path / "out")
    assert any(pending.parts is not None for pending in submitted)  # the workers checked the images
    for index, name in placed.items():
        _assert_decided(name, CASES[name][1], f"r{index}", kept, quarantined)
    assert len(kept) == count - sum(isinstance(CASES[name][1], str) for name in placed.values())
    for row in kept.values():
        _assert_decodes_as_recorded(row, "filler")


def test_the_batch_checks_settle_interlaced_pngs_and_leave_late_chunks_to_inspect_image():
    good, bad = list(interlaced_pngs().values()), interlaced_png(bad_row=3)
    late = [data for data, _ in refused_pngs().values() if b"IDAT" in data[33:45]] + list(late_oriented_pngs().values())
    ok, width, height = check_pngs(pa.array([*good, bad, *late], pa.binary()))
    assert ok.tolist() == [True] * len(good) + [False] * (1 + len(late))
    assert set(zip(width[:len(good)].tolist(), height[:len(good)].tolist())) == {(37, 29)}


def _pil_decodes(data: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.open(io.BytesIO(data)).load()
        return True
    except Exception:  # noqa: BLE001 - any failure of PIL's decode counts
        return False


@pytest.mark.parametrize(("depth", "colour", "width", "height"), [
    (8, 0, 1, 1), (8, 0, 3, 2), (1, 0, 9, 13), (16, 0, 17, 5), (8, 2, 8, 8), (16, 6, 5, 11), (4, 3, 13, 7),
])
def test_a_bad_filter_type_in_any_reduced_row_is_found_whole_and_piecewise(depth, colour, width, height,
                                                                             monkeypatch):
    """Whichever row of whichever pass holds it, with the stream inflated whole or a few bytes at a
    time (pieces that cut rows and passes anywhere), as PIL refuses it; none in a valid image."""
    bits = depth * images.PNG_CHANNELS[colour]
    for bad_row in [None, *range(adam7_rows(width, height, bits))]:
        data = interlaced_png(width, height, depth=depth, colour=colour, bad_row=bad_row)
        assert _pil_decodes(data) == (bad_row is None)
        for whole, piece in ((images.WHOLE_INFLATE_LIMIT, images._INFLATE_PIECE), (0, 1 << 22), (0, 1), (0, 5)):
            monkeypatch.setattr(images, "WHOLE_INFLATE_LIMIT", whole)
            monkeypatch.setattr(images, "_INFLATE_PIECE", piece)
            if bad_row is None:
                assert verify_png(data) == (width, height)
            else:
                with pytest.raises(ImageError, match="unknown filter type"):
                    verify_png(data)


def _text_bodies() -> list[tuple[bytes, bytes]]:
    """(chunk type, body) of text and ICC chunks with and without a NUL, method and stream (each
    stream one zlib inflates: a damaged one is refused here, though PIL reads it as no text)."""
    stream = zlib.compress(b"hello")
    bodies = []
    for kind in (b"tEXt", b"zTXt", b"iCCP"):
        bodies += [(kind, body) for body in (b"", b"name", b"name\x00", b"\x00", b"name\x00\x00",
                                             b"name\x00\x00" + stream, b"name\x00\x01" + stream, b"name\x00\x08")]
    bodies += [(b"iTXt", b"name\x00" + tail) for tail in (
        b"", b"\x01", b"\x01\x00", b"\x01\x00text", b"\x01\x00en\x00text", b"\x01\x00en\x00\x00" + stream,
        b"\x01\x01en\x00\x00" + stream, b"\x00\x00en\x00\x00text", b"\x01\x00\x00\x00" + zlib.compress(bytes(1 << 20)),
        b"\x01\x00\x00\x00" + zlib.compress(bytes((1 << 20) + 1)))]
    bodies += [(kind, b"name\x00\x00" + zlib.compress(bytes(size))) for kind in (b"zTXt", b"iCCP")
               for size in (1 << 20, (1 << 20) + 1)]
    return bodies


@pytest.mark.parametrize("after", [False, True], ids=["before the pixels", "after the pixels"])
def test_text_and_icc_chunks_are_refused_exactly_where_pil_refuses_them(after):
    for kind, body in _text_bodies():
        text = chunk(kind, body)
        data = png(48, 40, grey_idat(), text) if after else png(48, 40, text, grey_idat())
        try:
            accepted = inspect_image(data)[:2] == (48, 40)
        except ImageError as error:
            assert error.reason == "image_undecodable" and kind.decode() in error.detail, error.detail
            accepted = False
        assert accepted == _pil_decodes(data), (kind, body[:24])

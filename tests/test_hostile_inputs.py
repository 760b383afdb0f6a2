"""Hostile inputs: small files declaring huge or broken content, in real dataset layouts.

Each dataset is curated by a build job in a child process whose address space and CPU time are
capped with ``resource.setrlimit`` (``hostile_job.py``: 1 GiB beyond what the process maps after
its imports, 60 CPU seconds for all the jobs together): every dataset keeps its good rows, each
hostile row is quarantined with its reason and its file named, and every kept image decodes with
the training decoder. Annotation files that cannot be read within bounds stop with an error
naming the file and line, also under the same limits. All files are made at test time.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from benchmark_releases import medxpertqa_mm
from hostile_files import (
    corrupt_safetensors,
    deflated_dicom_bomb,
    exif_block,
    exif_png,
    exif_webp,
    frame_size_lie_dicom,
    gif_comment_blocks,
    huge_png16,
    huge_tiff,
    icon_image,
    instance_mask,
    jpeg_dicom,
    jpeg_scan_bomb,
    many_chunks_png,
    many_elements_dicom,
    many_frames_dicom,
    many_segments_jpeg,
    many_strips_tiff,
    native_colour_dicom_head,
    overflowing_idat_png,
    oversized_jpeg,
    parquet_page_bomb,
    plain_jpeg,
    plain_png,
    random_idat_png,
    tiled_tiff,
    twelve_bit_colour_png,
    twelve_bit_colour_tiff,
    twelve_bit_png,
    twelve_bit_values,
    windowed_dicom,
    ztxt_png,
)
from PIL import Image
from pydicom.data import get_testdata_files

from medmo_pipeline.data import shards
from medmo_pipeline.data.adapters.common import row_problem
from medmo_pipeline.data.adapters.masks import MAX_MASK_INSTANCES
from medmo_pipeline.data.annotations import AnnotationError, BoundedLines
from medmo_pipeline.data.curation import REASONS
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.pixels import (
    decoded_image,
    dicom_entry,
    model_image,
    percentile_window,
    window_to_uint8,
)

JOB = Path(__file__).with_name("hostile_job.py")


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    return _save(Image.open(io.BytesIO(plain_png(48, 40, 3, "RGB"))), "JPEG", exif=exif.tobytes())


GOOD_IMAGES = {
    "good0.png": lambda: plain_png(seed=0),
    "good1.png": lambda: plain_png(seed=1, mode="RGB"),
    "good2.jpg": lambda: plain_jpeg(seed=2),
    "twelve_bit.png": twelve_bit_png,
    "palette.png": lambda: _save(Image.open(io.BytesIO(plain_png(seed=4, mode="RGB"))).convert("P"), "PNG"),
    "cmyk.jpg": lambda: _save(Image.open(io.BytesIO(plain_png(seed=5, mode="RGB"))).convert("CMYK"), "JPEG"),
    "grey_alpha.png": lambda: _save(Image.open(io.BytesIO(plain_png(seed=6))).convert("LA"), "PNG"),
    "rotated.jpg": _rotated_jpeg,
    "rotated_exif.png": lambda: exif_png(exif_block(6)),
    "damaged_exif.png": lambda: exif_png(b"not a TIFF block"),  # shown as stored, by curation and decoder
}
HOSTILE_IMAGES = {  # file -> (bytes, the quarantine reason)
    "big16.png": (huge_png16, "image_too_large"),
    "random_idat.png": (random_idat_png, "image_undecodable"),
    "inflates_to_1gib.png": (overflowing_idat_png, "image_undecodable"),
    "ztxt_1gib.png": (ztxt_png, "image_undecodable"),
    "ztxt_256mib.png": (lambda: ztxt_png(256 << 20), "image_undecodable"),
    "truncated.jpg": (lambda: plain_jpeg(seed=7)[:-400], "image_truncated"),
    "tiny.jpg": (lambda: plain_jpeg(4, 4), "image_too_small"),
    "oversized.jpg": (oversized_jpeg, "image_too_large"),
    "huge.tif": (huge_tiff, "image_too_large"),
    "scans.jpg": (jpeg_scan_bomb, "image_too_costly"),  # 230 KB, 6 s of CPU to decode
    "icon.png": (icon_image, "image_undecodable"),  # a format PIL reads and no dataset publishes
    "chunks.png": (many_chunks_png, "image_too_costly"),  # 9.6 MB, 800,000 empty chunks: 2 s in PIL
    "comments.jpg": (many_segments_jpeg, "image_too_costly"),  # 10 MB, 2.5M empty comments: 2 s in PIL
    "strips.tif": (many_strips_tiff, "image_too_costly"),  # 8 MB, a million strip offsets: ~400 MB in PIL
    "tiles.tif": (tiled_tiff, "image_too_costly"),  # 64 x 64 in one 32768 x 32768 tile: 1 GiB when filled
    # a 40 MB EXIF block of 20M orientation values: 1.4 s and 600 MB to read the orientation
    "exif_values.png": (lambda: exif_png(exif_block(6, values=20_000_000)), "image_too_costly"),
}
HOSTILE_DICOM = {
    "bomb.dcm": (deflated_dicom_bomb, "image_too_large"),
    "frames.dcm": (many_frames_dicom, "image_too_large"),
    "garbage.dcm": (lambda: bytes(128) + b"DICM" + bytes(64), "image_undecodable"),
    "scans.dcm": (lambda: jpeg_dicom(jpeg_scan_bomb(), 4096), "image_too_costly"),  # the JPEG bomb as a frame
    "elements.dcm": (many_elements_dicom, "image_too_costly"),  # 12 MB, a million empty elements: 9 s, 680 MiB
    # 8 MB, a million empty fragments before its JPEG frame: 3 s in pydicom's walks of them
    "fragments.dcm": (lambda: jpeg_dicom(_save(Image.new("L", (64, 64), 90), "JPEG"), 64, empty_fragments=1_000_000),
                      "image_too_costly"),
    "frame_lies.dcm": (frame_size_lie_dicom, "image_undecodable"),  # 3 KB, its JPEG frame 12000 x 12000: 1.4 GiB
}


def _write(root: Path, files: dict) -> None:
    for relative, make in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())


def _sparse(path: Path, size: int) -> None:
    """A file declaring ``size`` bytes that costs no disk (its bytes read as zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def _datasets(tmp: Path) -> tuple[list[dict], dict[str, dict]]:
    """(jobs, per job: {row id: expected reason} and the number of good rows)."""
    jobs, expected = [], {}

    def job(name: str, family: str, root: Path, options: dict, hostile: dict, good: int) -> None:
        jobs.append({"name": name, "family": family, "root": str(root), "options": options,
                     "out": str(tmp / "out" / name)})
        expected[name] = {"reasons": hostile, "good": good}

    images = tmp / "images"
    _write(images / "lesion", {**GOOD_IMAGES, **{name: make for name, (make, _) in HOSTILE_IMAGES.items()}})
    _sparse(images / "lesion" / "two_gib.png", 2 << 30)  # refused from its size, never read
    job("images", "image_folder", images, {}, {f"lesion/{name}": reason for name, (_, reason) in HOSTILE_IMAGES.items()}
        | {"lesion/two_gib.png": "file_too_large"}, len(GOOD_IMAGES))

    captions = tmp / "captions"  # caption sidecars: one of 1 GiB
    _write(captions / "scans", {"a.png": lambda: plain_png(seed=11), "a.txt": lambda: b"a chest radiograph",
                                "b.png": lambda: plain_png(seed=12)})
    _sparse(captions / "scans" / "b.txt", 1 << 30)
    job("captions", "image_folder", captions, {"text_from": "sidecar"}, {"scans/b.png": "file_too_large"}, 1)

    yolo = tmp / "yolo"  # label files: one of 2 GiB, one linking out of the dataset, one a pipe
    _write(yolo, {"data.yaml": lambda: b"names: [nodule, mass]\n", "labels/a.txt": lambda: b"1 0.5 0.5 0.25 0.25\n",
                  **{f"images/{stem}.png": lambda stem=stem: plain_png(64, 64, ord(stem)) for stem in "abc"}})
    _sparse(yolo / "labels" / "b.txt", 2 << 30)
    (yolo / "labels" / "c.txt").symlink_to(tmp / "outside.txt")
    os.mkfifo(yolo / "labels" / "d.txt")  # a pipe: reading it would wait forever
    (tmp / "outside.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    job("yolo", "yolo", yolo, {"classes_file": "data.yaml"},
        {"labels/b.txt": "file_too_large", "labels/c.txt": "unsafe_path", "labels/d.txt": "unreadable_file"}, 1)

    dicom = tmp / "dicom"
    for name in ("CT_small.dcm", "MR_small.dcm"):
        (dicom / "ct").mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_files(name)[0], dicom / "ct" / name)
    _write(dicom / "ct", {"jpeg.dcm": lambda: jpeg_dicom(_save(Image.open(io.BytesIO(plain_png(64, 64, 8))), "JPEG",
                                                              progressive=True), 64),
                          # at the pixel budget (8000 x 8000), rescaled as a CT: kept, its rescale never held whole
                          "at_budget.dcm": partial(deflated_dicom_bomb, 8000, ("-1024", "1")),
                          **{name: make for name, (make, _) in HOSTILE_DICOM.items()}})
    # 16-bit colour within the file and pixel budgets (6500 x 6500, 253 MB): kept, one copy of it held at a time
    head, pixel_bytes = native_colour_dicom_head(6500)
    (dicom / "ct" / "colour_at_budget.dcm").write_bytes(head)
    os.truncate(dicom / "ct" / "colour_at_budget.dcm", len(head) + pixel_bytes)
    job("dicom", "image_folder", dicom, {}, {f"ct/{name}": reason for name, (_, reason) in HOSTILE_DICOM.items()}, 5)

    png16 = tmp / "png16"
    _write(png16 / "lesion", {"hu.png": twelve_bit_png, "big.png": huge_png16})
    job("png16", "image_folder", png16, {"png16_offset": 0}, {"lesion/big.png": "image_too_large"}, 1)

    masks = tmp / "masks"
    small = np.zeros((64, 64), np.uint8)
    small[3:9, 5:20], small[30:40, 30:33] = 1, 2
    _write(masks, {"images/a.png": lambda: plain_png(64, 64), "masks/a.png": lambda: _save(Image.fromarray(small), "PNG"),
                   # as many instances as a mask may hold: one pass, linear in pixels; more are refused
                   "images/b.png": lambda: plain_png(1024, 1024, 1),
                   "masks/b.png": partial(instance_mask, 1024, MAX_MASK_INSTANCES),
                   "images/c.png": lambda: plain_png(64, 64, 2), "masks/c.png": huge_png16,
                   "images/d.png": lambda: plain_png(1024, 1024, 3), "masks/d.png": instance_mask})
    job("masks", "instance_masks", masks, {}, {"c:cell": "image_too_large", "d:cell": "image_too_costly"}, 2)

    # MIMIC-CXR's study folders: a report of 200,000 paragraphs under headings that are no content
    # (3 MB): looking through every heading for each paragraph's first took 4.7 s at 16,000, the
    # square of that here
    reports = tmp / "reports"
    _write(reports / "files" / "p10" / "p10000032", {
        "s50000001.txt": lambda: b" FINAL REPORT\n FINDINGS:\n Lungs are clear.\n",
        "s50000001/a.jpg": plain_jpeg,
        "s50000002.txt": lambda: b"INDICATION: x\n\n" * 200_000 + b"The lungs are clear.\n",
        "s50000002/b.jpg": lambda: plain_jpeg(seed=1)})
    job("reports", "report", reports, {"layout": "study_folders", "image_dir": "files", "reports_glob": "**/s*.txt",
                                       "image_suffixes": [".jpg"], "modality": "xray"}, {}, 2)
    return jobs, expected


def _annotation_jobs(tmp: Path) -> list[dict]:
    root = tmp / "annotations"
    root.mkdir()
    with open(root / "big_field.csv", "w") as handle:  # a 100 MB quoted field on line 3
        handle.write('image,question,answer\na.png,"is it?",yes\nb.png,"' + "x" * (100 << 20) + '",no\n')
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "bad_utf8.jsonl").write_bytes(b'{"a": "ok"}\n{"a": "\xff"}\n')
    with open(root / "whitespace.json", "wb") as handle:  # declares 1 GiB; sparse, so it costs no disk
        handle.truncate(1 << 30)
    with open(root / "many.json", "w") as handle:  # 3M empty objects: ~200 MiB parsed whole
        handle.write("[" + ",".join(["{}"] * 3_000_000) + "]")
    (root / "damaged.parquet").write_bytes(b"PAR1" + bytes(1000) + b"\xff\xff\xff\x7fPAR1")  # footer past the start
    # 200 KB, its footer honest, its one page declaring (and inflating to) 700 MB: 770 MB in Arrow
    (root / "page_bomb.parquet").write_bytes(parquet_page_bomb())
    # 5.5 million fields on one line (16 MB): 280 MB of Python strings once split
    (root / "wide_row.csv").write_text("image,question,answer\n" + "ab," * 5_500_000 + "x\na.png,is it?,no\n")
    (root / "wide_header.csv").write_text("ab," * 5_500_000 + "x\na.png,is it?,no\n")
    # 300,000 records that are not JSON (3.3 MB): json's error for each counted the lines of all the
    # text read before it, about 1.5 CPU minutes for the file
    (root / "many_bad.json").write_text("[" + ",".join(['{"a": tru}'] * 300_000) + "]")
    jobs = [{"name": f"records:{name}", "records": name, "root": str(root)}
            for name in ("big_field.csv", "deep.json", "bad_utf8.jsonl", "whitespace.json", "many.json",
                         "damaged.parquet", "page_bomb.parquet", "wide_row.csv", "wide_header.csv",
                         "many_bad.json")]

    # Whole-source files a source cannot be read without: each stops its source, naming the file
    _write(root / "coco", {"images/a.png": lambda: plain_png(64, 64), "deep.json": lambda: b'{"categories": [' + b"[" * 100_000})
    _sparse(root / "coco" / "one_gib.json", 1 << 30)
    laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{level}: &{level} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, level in zip("abcdefgh", "bcdefghi"))
    _write(root / "yolo", {"laughs.yaml": lambda: (laughs + "names: *i\n").encode(), "images/a.png": plain_png,
                           "labels/a.txt": lambda: b"0 0.5 0.5 0.2 0.2\n"})
    sources = {"coco:one_gib.json": ("coco", "coco", {"file": "one_gib.json"}),
               "coco:deep.json": ("coco", "coco", {"file": "deep.json"}),
               "yolo:laughs.yaml": ("yolo", "yolo", {"classes_file": "laughs.yaml"})}
    return jobs + [{"name": name, "family": family, "root": str(root / folder), "options": options,
                    "out": str(tmp / "out" / name.replace(":", "-"))} for name, (folder, family, options) in sources.items()]


def _benchmark_jobs(tmp: Path) -> list[dict]:
    """MedXpertQA's release with questions whose options a careless reading takes in time quadratic
    in their length: an option line holding a million spaces, 200,000 "(A)" markers before the
    list's "(B)" (searching the text before each marker for the list's lead), and a million option
    lines (each put at the front of the list read so far)."""
    root = tmp / "medxpertqa"
    medxpertqa_mm(root)
    hostile = [("MM-spaces", "Which?\nA. x" + " " * 1_000_000 + "y\nB. z"),
               ("MM-markers", "Which? " + "(A) x " * 200_000 + "(B) y"),
               ("MM-lines", "Which?\n" + "A. x\n" * 1_000_000 + "B. y")]  # a million option lines, read from the end
    with open(root / "MM" / "test.jsonl", "a") as handle:
        handle.writelines(json.dumps({"id": ident, "question": question, "label": "A", "images": ["MM-0-a.jpeg"]})
                          + "\n" for ident, question in hostile)
    return [{"name": "benchmark:medxpertqa_mm", "benchmark": "medxpertqa_mm", "root": str(root)}]


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    jobs, expected = _datasets(tmp)
    jobs += _annotation_jobs(tmp) + _benchmark_jobs(tmp)
    done = subprocess.run([sys.executable, str(JOB), json.dumps(jobs)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), expected


def test_each_dataset_keeps_its_good_rows_and_quarantines_each_hostile_row_with_its_reason(suite):
    results, expected = suite
    for name, want in expected.items():
        result = results[name]
        assert "error" not in result, (name, result.get("trace"))
        quarantine = pq.read_table(result["quarantine_path"]).to_pylist()
        # a row the adapter could not make is named by its record (the file it was to come from)
        got = {row["row_id"] or row["record"]: row["reason"] for row in quarantine}
        assert got == want["reasons"], name
        assert result["rows_kept"] == want["good"], name
        for row in quarantine:  # the detail names the file
            assert (row["row_id"] or row["record"]).split(":")[0].rsplit("/", 1)[-1].split(".")[0] in row["detail"], row


def test_each_build_job_stays_within_one_gib_resident(suite):
    results, _ = suite
    for name, result in results.items():
        assert result["peak_rss_kib"] < 1 << 20, name


def test_the_peak_measured_is_the_jobs_own_not_that_of_the_process_that_started_it(tmp_path):
    """A launcher that touched 768 MiB then execs the job (as a large test run's fork does):
    the job's peak must not carry the launcher's, which ``ru_maxrss`` would."""
    (tmp_path / "one.jsonl").write_text('{"a": 1}\n')
    jobs = json.dumps([{"name": "small", "records": "one.jsonl", "root": str(tmp_path)}])
    launcher = ("import os, sys\nheld = bytearray(768 << 20)\nheld[::4096] = b'\\1' * len(held[::4096])\n"
                "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    done = subprocess.run([sys.executable, "-c", launcher, str(JOB), jobs], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)["small"]
    assert result["records"] == 1 and 0 < result["peak_rss_kib"] < 640 << 10


def test_annotation_files_beyond_their_bounds_are_refused_naming_file_and_line(suite):
    results, _ = suite
    # a 100 MB line is its record's problem: read through in bounded pieces, quarantined naming it
    big = results["records:big_field.csv"]
    assert big["records"] == 2 and big["quarantined"] == [
        ["malformed_record", f"big_field.csv: line 3 is longer than {16 << 20} characters (row 2)"]]
    # a record nested 100,000 deep is stepped over by counting its brackets: one record's problem
    assert results["records:deep.json"]["quarantined"] == [
        ["malformed_record", "deep.json: line 1: record 0 is nested too deeply to parse"]]
    assert "whitespace.json: line 1: the records are not a JSON list or object" in results["records:whitespace.json"]["error"]
    assert "damaged.parquet: not a Parquet file read here" in results["records:damaged.parquet"]["error"]
    # the size a page header declares is what Arrow allocates and inflates into, whatever the footer says
    bomb = results["records:page_bomb.parquet"]
    assert ("page_bomb.parquet: row group 0, column text: its pages declare 734003200 bytes once decompressed, its "
            "footer 200033: refused before Arrow decompresses it") in bomb["error"]
    assert bomb["peak_rss_kib"] - bomb["rss_before_kib"] < 64 << 10
    # a JSON list is read a record at a time: 3M records, a few MiB (the whole parse: ~200 MiB)
    many = results["records:many.json"]
    assert many["records"] == 3_000_000 and many["peak_rss_kib"] - many["rss_before_kib"] < 32 << 10
    assert all(result["error"].startswith("AnnotationError") for name, result in results.items()
               if name.startswith("records:") and name not in ("records:bad_utf8.jsonl", "records:many.json",
                                                               "records:big_field.csv", "records:deep.json",
                                                               "records:wide_row.csv", "records:wide_header.csv",
                                                               "records:many_bad.json"))
    # many records that are not JSON cost their own length each (within the job's CPU limit)
    bad = results["records:many_bad.json"]
    assert bad["records"] == bad["unreadable"] == 300_000 and bad["quarantined"][-1] == [
        "malformed_record", "many_bad.json: line 1: record 19 is not JSON (Expecting value)"]
    # a line of millions of fields is refused before it is split: its record's problem, or the
    # source's when it is the header
    assert results["records:wide_row.csv"]["records"] == 2 and results["records:wide_row.csv"]["quarantined"] == [
        ["malformed_record", "wide_row.csv: line 2 holds more than 100000 fields (row 1)"]]
    assert "wide_header.csv: its header row cannot be read" in results["records:wide_header.csv"]["error"]
    # one line that is not UTF-8 is one record's problem: read as a quarantine outcome naming its
    # line, the file goes on (both lines come out)
    assert results["records:bad_utf8.jsonl"]["records"] == 2 and "error" not in results["records:bad_utf8.jsonl"]


def test_source_files_that_cannot_be_read_within_bounds_stop_their_source_naming_the_file(suite):
    """A COCO file of 1 GiB (read a record at a time: its first byte is no JSON) or nested 100,000
    deep, and a YOLO classes file whose aliases expand to 387 million names each stop their
    source with the file's name, within the job's memory and CPU limits."""
    results, _ = suite
    for name, problem in {"coco:one_gib.json": "one_gib.json: line 1: expected '{' at the start",
                          "coco:deep.json": "deep.json: line 1: record 0 is nested too deeply",
                          "yolo:laughs.yaml": "laughs.yaml: aliases expand the file beyond 100000 nodes"}.items():
        assert problem in results[name].get("error", ""), (name, results[name])


def test_benchmark_questions_of_a_million_spaces_markers_or_lines_are_read_in_linear_time(suite):
    """Under the job's CPU limit (a quadratic read of any of them takes the better part of an hour),
    the hostile questions give their options, beside the release's own rows."""
    rows = suite[0]["benchmark:medxpertqa_mm"]["rows"]
    assert rows["medxpertqa_mm:MM-spaces"] == {"answer": "A", "choices": ["x       ...       y", "z...z"]}
    assert rows["medxpertqa_mm:MM-markers"] == {"answer": "A", "choices": ["x (A) x ... x (A) x", "y...y"]}
    assert rows["medxpertqa_mm:MM-lines"] == {"answer": "A", "choices": ["x...x", "y...y"]}
    assert rows["medxpertqa_mm:MM-0"]["choices"][0] == "Sarcoido...coidosis"


def test_every_kept_image_decodes_with_the_training_decoder(suite):
    results, expected = suite
    decoded = 0
    for name in expected:
        for row in shards.iter_rows(Path(results[name]["shard_dir"]), columns=["images", "boxes"]):
            for image in row["images"]:
                rgb = model_image(image["bytes"])
                assert rgb.mode == "RGB" and rgb.size == (image["width"], image["height"]), image["path"]
                decoded += 1
    assert decoded == sum(want["good"] for want in expected.values())


def test_twelve_bit_images_are_windowed_not_saturated():
    pixels = np.asarray(model_image(twelve_bit_png()))
    naive = np.asarray(Image.open(io.BytesIO(twelve_bit_png())).convert("RGB"))
    assert (naive == 255).mean() > 0.9  # what PIL's own conversion does to it
    assert (pixels == 255).mean() < 0.02 and (pixels == 0).mean() < 0.02 and pixels.std() > 30


@pytest.mark.parametrize(("make", "alpha", "grey"), [
    (twelve_bit_colour_png, False, False), (twelve_bit_colour_png, True, False), (twelve_bit_colour_png, True, True),
    *[(partial(twelve_bit_colour_tiff, order=order, deflate=deflate), alpha, False)
      for order in "<>" for deflate in (False, True) for alpha in (False, True)],
], ids=["png-rgb", "png-rgba", "png-grey-alpha", *[f"tiff-{order}{'-deflate' if deflate else ''}-{kind}"
                                                  for order in ("II", "MM") for deflate in (False, True)
                                                  for kind in ("rgb", "rgba")]])
def test_twelve_bit_colour_images_are_windowed_not_cut_to_their_high_bytes(make, alpha, grey):
    """PIL keeps each 16-bit sample's high byte: 12-bit values come out 0-15, nearly black. The
    decoder gives exactly the 16-bit values windowed over the colour channels together (the PNGs'
    rows use all five filters), and the bytes go to the trainer decoded (an 8-bit reader would see
    them dark)."""
    data = make(alpha=alpha, grey=grey) if grey else make(alpha=alpha)
    assert np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).max() <= 15  # what PIL's own decode does
    values = twelve_bit_values(alpha)[..., :1] if grey else twelve_bit_values(alpha)[..., :3]
    windowed = window_to_uint8(values, *percentile_window(values))
    decoded, plain = decoded_image(data)
    assert (np.asarray(decoded)[..., :3] == np.repeat(windowed, 3 if grey else 1, axis=-1)).all() and not plain
    pixels = np.asarray(model_image(data)).astype(float)
    assert (pixels == 255).mean() < 0.02 and pixels.std() > 30


def test_the_decoder_applies_exif_rotation_and_flattens_palette_cmyk_and_alpha():
    assert model_image(_rotated_jpeg()).size == (40, 48)
    for name in ("palette.png", "cmyk.jpg", "grey_alpha.png"):
        image = model_image(GOOD_IMAGES[name]())
        assert image.mode == "RGB" and image.size == (48, 40), name


def test_an_exif_block_beyond_what_a_jpeg_segment_holds_is_refused_before_pil_reads_it():
    """PNG eXIf and WebP EXIF chunks are bounded by ``MAX_EXIF_BYTES`` (a JPEG's APP1 segment, where
    such blocks come from) on the row path and in the decoder alike; a block within it is read."""
    from medmo_pipeline.data.image_limits import MAX_EXIF_BYTES, ImageError
    from medmo_pipeline.data.images import inspect_image

    for data, where in ((exif_png(exif_block(6, values=20_000_000)), "PNG eXIf chunk at byte 33"),
                        (exif_webp(exif_block(6, values=20_000_000)), "WebP EXIF chunk")):
        for read in (inspect_image, model_image):
            with pytest.raises(ImageError, match=f"{where}.* holds an EXIF block of 4000.... bytes > {MAX_EXIF_BYTES}"):
                read(data)
    webp = exif_webp(exif_block(6))  # an EXIF chunk behind 200,000 empty ones is not walked to
    crowded = webp[:30] + (b"ABCD" + bytes(4)) * 200_000 + webp[30:]
    with pytest.raises(ImageError, match="WebP of more than 100000 chunks"):
        inspect_image(b"RIFF" + struct.pack("<I", len(crowded) - 8) + crowded[8:])
    within = exif_block(6, padding=MAX_EXIF_BYTES - 64)
    assert inspect_image(exif_png(within))[:2] == inspect_image(exif_webp(within))[:2] == (24, 48)
    assert model_image(exif_png(within)).size == model_image(exif_webp(within)).size == (24, 48)


def test_a_gif_of_a_million_comment_sub_blocks_is_refused_before_pil_reads_them():
    from medmo_pipeline.data.image_limits import ImageError, ImageLimits
    from medmo_pipeline.data.images import inspect_image

    for read in (inspect_image, model_image):
        with pytest.raises(ImageError, match="GIF of more than 100000 extension sub-blocks"):
            read(gif_comment_blocks())
    assert inspect_image(gif_comment_blocks(2000, 255), ImageLimits()) == (16, 16, "GIF")  # 500 KB of comment


def test_a_tiff_tile_larger_than_its_image_and_a_megapixel_is_refused_from_the_header():
    from medmo_pipeline.data.image_limits import ImageError, ImageLimits
    from medmo_pipeline.data.images import inspect_image

    with pytest.raises(ImageError, match="TIFF tiles of 32768x32768 for an image of 64x64"):
        inspect_image(tiled_tiff(), ImageLimits())
    assert inspect_image(tiled_tiff(256, filled=True), ImageLimits()) == (64, 64, "TIFF")  # a usual tile: read


def test_a_dicom_frame_declaring_another_size_is_refused_before_it_is_decoded():
    """The decoder allocates what the frame's own header declares (12000 x 12000 x 3 here: 1.4 GiB
    for a 3 KB file); the frame is refused from its header instead, naming both sizes."""
    from medmo_pipeline.data.dicom import read_dicom
    from medmo_pipeline.data.image_limits import ImageError, ImageLimits

    for jpeg_ls in (False, True):  # JPEG-LS (SOF55): a frame header PIL does not read, walked here
        with pytest.raises(ImageError, match="its compressed frame declares 12000x12000 pixels, the data set 64x64"):
            read_dicom(frame_size_lie_dicom(jpeg_ls=jpeg_ls), ImageLimits(), "frame_lies.dcm")
    read_dicom(jpeg_dicom(_save(Image.open(io.BytesIO(plain_png(64, 64, 8))), "JPEG"), 64), ImageLimits())  # a true one


def test_pixel_data_beyond_its_declared_frames_is_not_read_as_more_frames():
    """A 64 x 64 data set of one frame whose Pixel Data holds 8 MB: pydicom's default returned 976
    frames, read as samples, and a 64 x 976 image of each frame's first column was kept."""
    from hostile_files import _dicom_file, _element, _image_elements

    from medmo_pipeline.data.dicom import read_dicom
    from medmo_pipeline.data.image_limits import ImageLimits
    from medmo_pipeline.data.pixels import dicom_entry

    excess = _dicom_file("1.2.840.10008.1.2.1", _image_elements(64, 64) + _element(
        0x7FE0, 0x0010, b"OW", (np.arange(2000 * 2000) % 4000).astype("<u2").tobytes()))
    _, pixels = read_dicom(excess, ImageLimits(), "excess.dcm")
    assert pixels.shape == (64, 64)
    entry = dicom_entry(excess, path="excess.dcm")  # as curation keeps it: windowed to an 8-bit PNG
    assert (entry["width"], entry["height"]) == (64, 64) and model_image(entry["bytes"]).size == (64, 64)


def test_a_mask_of_thousands_of_instances_gives_every_box_in_one_pass_and_more_are_refused(monkeypatch):
    from medmo_pipeline.data.adapters import masks
    from medmo_pipeline.data.image_limits import ImageError

    boxes = masks.instance_boxes(instance_mask(256, masks.MAX_MASK_INSTANCES))
    assert len(boxes) == masks.MAX_MASK_INSTANCES
    assert all(0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256 for x1, y1, x2, y2 in boxes)
    with pytest.raises(ImageError, match="image_too_costly: mask: more than 10000 instances"):
        masks.instance_boxes(instance_mask(256, 65535))
    colours = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)  # a colour per pixel
    with pytest.raises(ImageError, match="more than 10000 instances"):
        masks.instance_boxes(_save(Image.fromarray(colours), "PNG"))
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:9], mask[10:12, 0:2] = 1, 7
    assert masks.instance_boxes(_save(Image.fromarray(mask), "PNG")) == [(3, 2, 9, 5), (0, 10, 2, 12)]
    # an instance spanning the bands the mask is walked in keeps one box; float ids past int64 stay apart
    monkeypatch.setattr(masks, "_BAND_PIXELS", 60)
    tall = np.zeros((20, 30), np.float32)
    tall[1:19, 4:6], tall[3:5, 10:20] = 1e20, 3e20
    assert masks.boxes_of_ids(tall) == [(4, 1, 6, 19), (10, 3, 20, 5)]
    pages = [Image.fromarray(mask), Image.fromarray(mask[::-1])]
    many = io.BytesIO()
    pages[0].save(many, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageError, match="mask: 2 pages"):  # the second page's instances would be lost
        masks.instance_boxes(many.getvalue())


_SPACES = b" " * (1 << 20)


class _Spaces(io.RawIOBase):
    """An endless-looking stream of ``size`` spaces, then one JSON line (never held in memory)."""

    def __init__(self, size: int):
        self.left, self.tail = size, b'\n{"a": 1}\n'

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left:
            count = min(self.left, len(buffer))
            buffer[:count] = _SPACES[:count]
            self.left -= count
            return count
        count = min(len(self.tail), len(buffer))
        buffer[:count], self.tail = self.tail[:count], self.tail[count:]
        return count


def test_a_gigabyte_of_whitespace_is_skipped_in_bounded_pieces():
    lines = BoundedLines(io.BufferedReader(_Spaces(1 << 30), 1 << 20), "spaces.jsonl", max_line=1 << 20)
    assert [line for line in lines if line.strip()] == [b'{"a": 1}\n']
    with pytest.raises(AnnotationError, match="junk.jsonl: line 1 is longer"):
        list(BoundedLines(io.BytesIO(b"x" * 100), "junk.jsonl", max_line=10))
    # the line after an over-long one is read: a long line is one record's problem
    lines = BoundedLines(io.BytesIO(b"ok\n" + b"x" * 100 + b"\nnext\n"), "junk.jsonl", max_line=10)
    assert next(lines) == b"ok\n"
    with pytest.raises(AnnotationError, match="junk.jsonl: line 2 is longer"):
        next(lines)
    assert list(lines) == [b"next\n"] and lines.number == 3


def test_a_corrupt_safetensors_header_names_the_file(tmp_path):
    from medmo_pipeline.model.loading import CorruptCheckpointError, check_safetensors_headers, load_model

    (tmp_path / "model.safetensors").write_bytes(corrupt_safetensors())
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CorruptCheckpointError, match="model.safetensors: corrupt safetensors header"):
        check_safetensors_headers(tmp_path)
    with pytest.raises(CorruptCheckpointError, match="model.safetensors"):
        load_model(tmp_path)


def test_a_quoted_csv_field_of_very_many_lines_costs_its_record_not_memory(monkeypatch):
    """Each line of the record being read is kept, to be read again if its quote never closes: a
    field of millions of short lines (a few MB of file, within the field bound) held hundreds of MB.
    Past ``MAX_RECORD_LINES`` lines the record is refused at its first line and the lines it took
    in are read as records of their own; a record within the bound is read whole."""
    from medmo_pipeline.data import annotations

    monkeypatch.setattr(annotations, "MAX_RECORD_LINES", 50)
    text = 'id,text\n1,"a note\n' + "of a line\n" * 30 + 'ends"\n2,"' + "x\n" * 200 + '"\n3,fine\n'
    rows = list(annotations.csv_rows(BoundedLines(io.StringIO(text, newline=""), "notes.csv"), ","))
    assert rows[1] == (2, ["1", "a note\n" + "of a line\n" * 30 + "ends"])
    first, refused = rows[2]
    assert first == 34 and "notes.csv: line 34: a quote opened here spans more than 50 lines" in refused.problem
    assert rows[3:53] == [(line, ["x"]) for line in range(35, 85)]  # read again, one record each
    assert rows[-1] == (235, ["3", "fine"]) and len(rows) == 204  # the lone closing quote costs its own line


def _safetensors(tensors: dict, data: bytes) -> bytes:
    header = json.dumps(tensors).encode()
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize(("tensors", "data", "says"), [
    ({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}}, bytes(16), "takes 4000000 bytes"),
    ({"w": {"dtype": "Q9", "shape": [4], "data_offsets": [0, 16]}}, bytes(16), "unknown dtype 'Q9'"),
    ({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, bytes(16), "shape '4'"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},  # b overlaps a
      "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24), "starts at data byte 8, not at 16"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16), "starts at data byte 8, not at 0"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(16), "end at data byte 8 of 16"),
])
def test_a_safetensors_header_the_library_would_refuse_is_refused_naming_the_file(tmp_path, tensors, data, says):
    """The library's own checks (dtype, shape against the byte range, the tensors tiling the data
    bytes) made first, so that its error, which names no file, is never the one a user sees."""
    from medmo_pipeline.model.loading import CorruptCheckpointError, check_safetensors_headers

    (tmp_path / "model.safetensors").write_bytes(_safetensors(tensors, data))
    with pytest.raises(CorruptCheckpointError, match=f"model.safetensors: corrupt safetensors header: .*{says}"):
        check_safetensors_headers(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(_safetensors(  # a sound file of sub-byte and wide dtypes
        {"a": {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]},
         "b": {"dtype": "BF16", "shape": [0], "data_offsets": [3, 3]},
         "c": {"dtype": "I64", "shape": [1], "data_offsets": [3, 11]}, "__metadata__": {"format": "pt"}}, bytes(11)))
    check_safetensors_headers(tmp_path)


def test_every_kept_image_of_the_fixtures_decodes_with_the_training_decoder(tmp_path):
    """Every registry dataset's fixture and the synthetic sources, curated, then decoded."""
    from fixtures_formats import build_fixture
    from test_adapters import CASES

    from medmo_pipeline.data.adapters import iter_samples
    from medmo_pipeline.data.curation import curate
    from medmo_pipeline.data.synthetic import generate_rows

    sources = {f"{case.values[0].name}-{case.values[1].family}": case.values[1] for case in CASES}
    decoded = 0
    for index, (name, spec) in enumerate(sources.items()):
        root = tmp_path / f"src{index}"
        build_fixture(spec.family, root, spec.options)
        report = curate(iter_samples(spec.family, root, spec.options), tmp_path / f"out{index}", source=name)
        for row in shards.iter_rows(Path(report["shard_dir"]), columns=["images"]):
            for image in row["images"]:
                assert model_image(image["bytes"]).size == (image["width"], image["height"]), (name, image["path"])
                decoded += 1
    synthetic = [*generate_rows("synth_xray", "train", 20, image_size=48), *generate_rows("synth_cells", "eval", 10)]
    report = curate(synthetic, tmp_path / "synthetic", source="synthetic")
    for row in shards.iter_rows(Path(report["shard_dir"]), columns=["images"]):
        for image in row["images"]:
            assert model_image(image["bytes"]).mode == "RGB"
            decoded += 1
    assert decoded > len(sources)


def test_training_and_evaluation_skip_and_count_rows_whose_images_do_not_decode():
    from medmo_pipeline.data.model_images import decodable_rows, decode_images

    def row(name: str, data: bytes) -> dict:
        return {"id": name, "images": [{"bytes": data, "path": f"{name}.png", "width": 48, "height": 40}]}

    rows = [row("good", plain_png()), row("broken", random_idat_png()), row("twelve", twelve_bit_png()),
            row("big", huge_png16())]
    logged = []
    kept, skipped = decodable_rows(rows, logged.append)
    assert [r["id"] for r in kept] == ["good", "twelve"] and skipped == 2
    assert any("broken" in line and "broken.png" in line for line in logged)
    assert kept[0] is rows[0]  # 8-bit images keep their bytes
    converted = Image.open(io.BytesIO(kept[1]["images"][0]["bytes"]))
    assert converted.mode in ("L", "RGB") and (np.asarray(converted) == 255).mean() < 0.02
    assert [image.mode for image in decode_images(kept[1])] == ["RGB"]


def test_a_shard_row_without_bytes_or_too_elongated_for_the_processor_is_skipped_and_counted():
    """A shard written elsewhere may hold null image bytes (the schema allows them) or a 2000 x 8
    image, which Qwen-VL's processor refuses (over 200:1): each costs its row, never the job."""
    from pydantic import ValidationError

    from medmo_pipeline.data.model_images import decodable_rows, skip_undecodable
    from medmo_pipeline.recipe_schema import ImageLimitsRecipe

    def row(name: str, data) -> dict:
        return {"id": name, "images": [{"bytes": data, "path": f"{name}.png"}]}

    long = io.BytesIO()
    Image.fromarray(np.full((8, 2000), 90, np.uint8)).save(long, format="PNG")
    rows = [row("good", plain_png()), row("null", None), row("long", long.getvalue())]
    logged = []
    kept, skipped = decodable_rows(rows, logged.append)
    assert [r["id"] for r in kept] == ["good"] and skipped == 2
    assert any("image_missing" in line and "null.png" in line for line in logged)
    assert any("image_aspect_ratio" in line and "long.png" in line for line in logged)
    stream = skip_undecodable(lambda r: r, pixels=True)
    assert [stream(r) is None for r in rows] == [False, True, True] and stream.skipped == ["null", "long"]
    with pytest.raises(ValidationError, match="max_aspect_ratio"):  # nor may a recipe keep such images
        ImageLimitsRecipe(max_aspect_ratio=500)


def test_a_training_stream_decodes_each_image_once_to_the_pixels_the_bytes_path_gives():
    """``skip_undecodable(..., pixels=True)`` (the training jobs' streams) hands on the images it
    decoded; they are what the trainer's ``datasets.Image`` decoding made of the model-ready bytes:
    the same mode, size and pixels, for an 8-bit PNG, a 12-bit one, a palette image, an EXIF-rotated
    JPEG and a greyscale+alpha PNG. A row that does not decode is skipped and counted either way."""
    import datasets

    from medmo_pipeline.data.model_images import skip_undecodable
    from medmo_pipeline.training.examples import image_cells

    def encoded(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    rotated = Image.new("RGB", (40, 24), (200, 30, 30))
    rotated.paste((20, 200, 20), (0, 0, 10, 24))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the model sees a 24 x 40 image
    images = {"plain": plain_png(), "twelve": twelve_bit_png(), "broken": random_idat_png(),
              "palette": encoded(Image.fromarray(np.arange(48 * 40, dtype=np.uint8).reshape(40, 48) % 7 * 30)
                                 .convert("P"), "PNG"),
              "rotated": encoded(rotated, "JPEG", exif=exif),
              "alpha": encoded(Image.fromarray(np.full((40, 48, 2), 120, dtype=np.uint8), "LA"), "PNG")}
    rows = [{"id": name, "images": [{"bytes": data, "path": f"{name}.img"}]} for name, data in images.items()]
    by_bytes, by_pixels = skip_undecodable(image_cells), skip_undecodable(image_cells, pixels=True)
    feature = datasets.Image()
    for row in rows:
        cells, decoded = by_bytes(row), by_pixels(row)
        if row["id"] == "broken":
            assert cells is None and decoded is None
            continue
        reference = feature.decode_example(cells[0])  # what the trainer decoded from the bytes
        assert decoded[0].mode == reference.mode and decoded[0].size == reference.size, row["id"]
        assert np.array_equal(np.asarray(decoded[0]), np.asarray(reference)), row["id"]
    assert by_bytes.skipped == by_pixels.skipped == ["broken"]
    assert by_pixels(rows[4])[0].size == (24, 40)


def test_a_file_whose_content_differs_from_its_name_is_decided_by_content_and_counted(tmp_path):
    from medmo_pipeline.data.curation import CurationLimits, curate

    def row(name: str, data: bytes) -> dict:
        return {"id": name, "task": "vqa", "messages": [{"role": "user", "content": "Is it?"},
                                                        {"role": "assistant", "content": "yes"}],
                "answer": "yes", "images": [{"bytes": data, "path": name}]}

    rows = [row("scan.png", plain_jpeg()), row("scan.jpg", plain_png()), row("fine.png", plain_png(seed=3))]
    report = curate(rows, tmp_path / "out", source="names")
    assert report["rows_kept"] == 3 and report["extension_mismatches"] == 2
    strict = curate(rows, tmp_path / "strict", source="names", limits=CurationLimits(check_extension=True))
    assert strict["quarantined_by_reason"] == {"extension_mismatch": 2} and strict["extension_mismatches"] == 0


def test_dicom_under_an_image_name_and_an_image_under_a_dicom_name_are_read_by_content(tmp_path):
    """An image folder holding a DICOM named .png (a CT slice exported without renaming) and a PNG
    named .dcm, and a Parquet record embedding DICOM bytes: each is read as what it holds. Before,
    the first was refused as "DICOM bytes as an image", the second as a DICOM without rows, the
    third as the first."""
    import pyarrow as pa

    from medmo_pipeline.data.adapters import iter_outcomes
    from medmo_pipeline.data.curation import curate

    dicom = Path(get_testdata_files("CT_small.dcm")[0]).read_bytes()  # its preamble is a TIFF header, too
    _write(tmp_path / "folder", {"lesion/ct_slice.png": lambda: dicom, "lesion/exported.dcm": plain_png,
                                 "lesion/good.png": lambda: plain_png(seed=2)})
    rows = list(iter_outcomes("image_folder", tmp_path / "folder", {}))
    report = curate(rows, tmp_path / "out", source="folder")
    assert report["rows_kept"] == 3 and report["quarantined"] == 0, report["quarantined_by_reason"]
    sizes = {row["id"].split(":", 1)[1]: (row["images"][0]["width"], row["images"][0]["height"])
             for row in pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()}
    assert sizes == {"lesion/ct_slice.png": (128, 128), "lesion/exported.dcm": (48, 40), "lesion/good.png": (48, 40)}
    records = pa.table({"image": [{"bytes": dicom, "path": "slice_0001.png"}], "question": ["What is shown?"],
                        "answer": ["ct"]})
    pq.write_table(records, tmp_path / "train.parquet")
    rows = list(iter_outcomes("vqa", tmp_path, {"file": "train.parquet", "image_field": "image"}))
    assert [(row["images"][0]["width"], row["images"][0]["path"]) for row in rows] == [(128, "slice_0001.png")]


def test_a_jpeg_of_thousands_of_scans_and_a_format_outside_the_list_are_refused_before_decoding():
    from medmo_pipeline.data.image_limits import IMAGE_FORMATS, ImageError, ImageLimits
    from medmo_pipeline.data.images import inspect_image

    bomb = jpeg_scan_bomb()  # 5,000 scans: 6 s of PIL's decode on this machine
    for check in (inspect_image, model_image):
        with pytest.raises(ImageError) as refused:
            check(bomb)
        assert refused.value.reason == "image_too_costly" and "5001 scans > 100" in refused.value.detail
        with pytest.raises(ImageError) as refused:
            check(icon_image())
        assert refused.value.reason == "image_undecodable" and ", ".join(IMAGE_FORMATS) in refused.value.detail
    # what encoders write passes: a progressive JPEG (6 scans for grey, 10 for colour) and the bomb's
    # own layout below the limit
    colour = Image.open(io.BytesIO(plain_png(64, 48, 3, "RGB")))
    for image in (colour, colour.convert("L")):
        assert inspect_image(_save(image, "JPEG", progressive=True)) == (64, 48, "JPEG")
    assert inspect_image(jpeg_scan_bomb(1024, 98)) == (1024, 1024, "JPEG")
    with pytest.raises(ImageError, match="image_too_costly"):
        inspect_image(jpeg_scan_bomb(1024, 98), ImageLimits(max_jpeg_scans=50))


def test_many_chunks_segments_tiff_values_or_dicom_elements_are_refused_over_the_limit():
    from medmo_pipeline.data.image_limits import ImageError, ImageLimits
    from medmo_pipeline.data.images import inspect_image

    limits = ImageLimits(max_chunks=1000)
    # a PNG counts IHDR, its chunks, IDAT and IEND; a JPEG its markers before the first scan
    assert inspect_image(many_chunks_png(996), limits) == (64, 64, "PNG")
    assert inspect_image(many_segments_jpeg(500), limits) == (64, 64, "JPEG")
    for image in (many_chunks_png(1000), many_segments_jpeg(1000), many_strips_tiff(1001),
                  many_strips_tiff(1001, ">")):
        for check in (inspect_image, model_image):
            with pytest.raises(ImageError, match="image_too_costly"):
                check(image, limits)
    from medmo_pipeline.data.pixels import dicom_entry

    assert dicom_entry(many_elements_dicom(980), limits=limits)["width"] == 64  # and the image's own 10
    assert dicom_entry(many_elements_dicom(1000), limits=limits)["error"].reason == "image_too_costly"
    # a TIFF's strips: a tag of 1000 values is read; PIL then finds the 4000-row image cut short
    with pytest.raises(ImageError, match="image_truncated|image_undecodable"):
        inspect_image(many_strips_tiff(1000), limits)


def test_a_dicom_window_listed_millions_of_times_or_unusable_is_read_from_its_first_value_or_left_out():
    """The first of two million listed windows (7 MB, as UN) is read without converting the rest
    (pydicom's conversion of them all took seconds and gigabytes); a window that is not a finite
    number with a positive width is left out: the percentile window decides, as without one."""
    from medmo_pipeline.data.pixels import dicom_entry

    def pixels_of(data: bytes) -> np.ndarray:
        entry = dicom_entry(data, path="w.dcm")
        assert entry["bytes"], entry
        return np.asarray(Image.open(io.BytesIO(entry["bytes"])))

    single = pixels_of(windowed_dicom(b"400 ", b"800 "))
    assert np.array_equal(pixels_of(windowed_dicom(b"400\\900\\" * 1_000_000, b"800\\100\\" * 1_000_000, b"UN")), single)
    assert not np.array_equal(single, pixels_of(windowed_dicom(b"900 ", b"100 ")))  # the window matters
    no_window = pixels_of(windowed_dicom(b"NaN ", b"800 "))
    for center, width in ((b"400 ", b"0 "), (b"abc ", b"800 "), (b"400 ", b"-5")):
        assert np.array_equal(pixels_of(windowed_dicom(center, width)), no_window)


def test_parquet_rows_that_decode_far_beyond_the_file_cost_their_row_or_their_source(tmp_path, monkeypatch):
    """A dictionary page lets a file of a few hundred bytes give every row one long value (2,048 rows
    of a 512 KiB string peaked at 850 MiB), and a few bytes of levels make millions of empty lists.
    A row over its bound is its record's problem; a file decoding to more than ``EXPANSION`` times
    its size (and a floor) stops its source before its rows are built. Bounds lowered here."""
    import pyarrow as pa

    from medmo_pipeline.data.adapters import records

    monkeypatch.setattr(records, "EXPANSION_FLOOR", 4 << 20)
    monkeypatch.setattr(records, "MAX_ROW_VALUES", 1000)
    repeated = pa.DictionaryArray.from_arrays(pa.array(np.zeros(2048, np.int32)), pa.array(["x" * (64 << 10)]))
    pq.write_table(pa.table({"question": repeated, "answer": ["yes"] * 2048}), tmp_path / "repeated.parquet",
                   compression="zstd", store_schema=False)
    assert (tmp_path / "repeated.parquet").stat().st_size < 1000
    with pytest.raises(AnnotationError, match=r"repeated.parquet: its rows decode to more than \d+ bytes"):
        list(records.iter_records(tmp_path, "repeated.parquet"))
    nested = pa.array([[[]] * 5000, [[1, 2]]], pa.list_(pa.list_(pa.int32())))
    pq.write_table(pa.table({"question": ["many", "few"], "answer": ["a", "b"], "levels": nested}),
                   tmp_path / "levels.parquet")
    read = list(records.iter_records(tmp_path, "levels.parquet"))
    assert isinstance(read[0], RowQuarantined) and "row 1: decodes to" in read[0].detail, read[0]
    assert read[1]["question"] == "few" and read[1].origin == ("levels.parquet", "row 2")
    few = pa.DictionaryArray.from_arrays(pa.array(np.zeros(300, np.int32)), pa.array(["x" * 1000]))
    pq.write_table(pa.table({"question": few}), tmp_path / "few.parquet")  # within bounds: read as written
    assert [row["question"] for row in records.iter_records(tmp_path, "few.parquet")] == ["x" * 1000] * 300


def test_a_parquet_row_heavier_than_a_batch_but_within_its_bound_is_read(tmp_path, monkeypatch):
    """A batch over ``_BATCH_BYTES`` is built a row at a time; a single row that heavy (an embedded
    tile of 100 MB, under the 256 MiB a row may take) is that row, read, not split again without end
    (it was: RecursionError). Bound lowered here."""
    import pyarrow as pa

    from medmo_pipeline.data.adapters import records

    monkeypatch.setattr(records, "_BATCH_BYTES", 4096)
    pq.write_table(pa.table({"question": ["x" * 10_000, "short"], "answer": ["a", "b"]}), tmp_path / "heavy.parquet")
    read = list(records.iter_records(tmp_path, "heavy.parquet"))
    assert [row["question"] for row in read] == ["x" * 10_000, "short"]
    assert read[0].origin == ("heavy.parquet", "row 1") and read[1].origin == ("heavy.parquet", "row 2")


_OUT_OF_MEMORY_CHILD = """
import json, os, resource, sys
from pathlib import Path
import pydicom.pixels  # imported before the limit, as a job has it by the time it reads its files
from medmo_pipeline.data.pixels import dicom_entry
from medmo_pipeline.process_memory import address_space_kib
limit = address_space_kib() * 1024 + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
error = dicom_entry(Path(sys.argv[1]), path="ct/big.dcm")["error"]
print(json.dumps([error.reason, error.detail]))
"""


def test_a_file_that_runs_the_job_out_of_memory_says_so_and_is_not_called_undecodable(tmp_path):
    """A 60 MB colour DICOM within every limit, decoded by a process that has 75 MiB of address
    space left (its file and its frame take 120; reading it fits, with what the allocator holds
    already): the row's reason is the cost, and its detail says memory ran out. Every decoder
    turned the MemoryError into 'image_undecodable', as if the file were damaged."""
    head, pixel_bytes = native_colour_dicom_head(3162)
    path = tmp_path / "big.dcm"
    path.write_bytes(head)
    os.truncate(path, len(head) + pixel_bytes)
    done = subprocess.run([sys.executable, "-c", _OUT_OF_MEMORY_CHILD, str(path), str(75 << 20)],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    reason, detail = json.loads(done.stdout.strip().splitlines()[-1])
    assert reason == "image_too_costly" and "ran out of memory" in detail and "ct/big.dcm" in detail
    assert dicom_entry(path, path="ct/big.dcm")["bytes"]  # with the memory, it is an image


def test_a_record_that_runs_out_of_memory_is_quarantined_saying_so():
    """Outside a decoder (a record's text, say), the row's reason is ``out_of_memory``, in the
    adapters and in curation's own checks."""
    outcome = row_problem(MemoryError(), "train.jsonl", "line 7")
    assert outcome.reason == "out_of_memory" and "MemoryError" in outcome.detail and "train.jsonl" in outcome.detail
    assert "out_of_memory" in REASONS


def test_reading_a_small_file_reserves_its_size_not_the_bound(tmp_path):
    """A 1 KB file read under a 1 GiB bound, in a process with 64 MiB of address space left: read()
    asked for the bound reserved all of it first (256 MB for every image read), and failed."""
    small = tmp_path / "small.png"
    small.write_bytes(plain_png())
    child = ("import resource, sys\nfrom pathlib import Path\nfrom medmo_pipeline.process_memory import address_space_kib\n"
             "from medmo_pipeline.safe_paths import read_bounded\n"
             "limit = address_space_kib() * 1024 + (64 << 20)\nresource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
             "print(len(read_bounded(Path(sys.argv[1]), 1 << 30)))")
    done = subprocess.run([sys.executable, "-c", child, str(small)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-1000:]
    assert int(done.stdout) == small.stat().st_size

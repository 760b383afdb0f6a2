"""Row-level fuzz: for every adapter family, records with junk in every field (NaN, inf, huge ints,
empty, control characters, '..' and absolute paths, symlinks out of the root, wrong types, bytes
that are not UTF-8) never stop the source, the good records are still kept, and every input row
ends kept, quarantined or filtered, by reason."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import build_fixture, concrete, png_bytes, write_file

from medmo_pipeline.data.adapters import ADAPTERS, adapter, iter_outcomes
from medmo_pipeline.data.curation import REASONS, curate
from medmo_pipeline.data.outcomes import FILTER_REASONS, RowFiltered, RowQuarantined
from medmo_pipeline.data.registry import load_registry

JUNK = [float("nan"), float("inf"), -float("inf"), 10**30, -(10**30), "", None, "\x00\x07\x1b[2J", "../../secret.png",
        "/etc/passwd", "C:\\Windows\\win.ini", "link_out.png", [1, [2]], {"nested": {"x": 1}}, True, 3.5, "\udc80"]
# One registry dataset per record family, chosen to cover every record format.
RECORD_DATASETS = {"caption": "medtrinity", "vqa": "vqa_rad", "llava_json": "pubmed_vision", "multiple_choice": "medqa",
                   "text_instruction": "mimic_iv_ext_bhc", "report": "iu_xray",
                   "label_csv": "chexpert"}
RECORD_FAMILIES = tuple(RECORD_DATASETS)
REGISTRY = load_registry()


def family_options(family: str) -> dict:
    """The first registry dataset's options for ``family`` (coco: a test layout)."""
    if family == "coco":
        return {"file": "annotations.json"}
    if family in RECORD_DATASETS:
        return REGISTRY.get(RECORD_DATASETS[family]).adapters[0].options
    for entry in REGISTRY.datasets:
        for spec in entry.adapters:
            if spec.family == family and (family != "report" or spec.options.get("layout") != "study_folders"):
                return spec.options
    raise AssertionError(family)


def with_outside(root: Path) -> None:
    """A secret file beside the dataset root and a symlink to it inside the root."""
    write_file(root.parent, "secret.png", png_bytes(seed=99))
    (root / "link_out.png").symlink_to(root.parent / "secret.png")


def read_records(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.loads(path.read_text())
    if suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if suffix in (".csv", ".tsv"):
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
    return pq.read_table(path).to_pylist()


def write_junk(path: Path, records: list[dict]) -> None:
    """``records`` in the file's own format; what that format cannot hold is written as text."""
    suffix = path.suffix.lower()
    if suffix != ".parquet":
        records = [{k: v for k, v in r.items() if k != "_junk"} for r in records]
    if suffix == ".json":
        path.write_text(json.dumps(records))  # NaN/Infinity as Python writes them; "\udc80" as an escape
    elif suffix == ".jsonl":
        lines = [json.dumps(record) for record in records] + ["{not json", "[1, 2]"]
        path.write_bytes("\n".join(lines).encode() + b"\n{\"question\": \"\xff\xfe\"}\n")
    elif suffix in (".csv", ".tsv"):
        fields = list(dict.fromkeys(k for r in records for k in r))
        with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.DictWriter(handle, fields, delimiter="\t" if suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows({k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} for r in records)
        with open(path, "ab") as handle:
            handle.write(b"\xff\xfe broken bytes,\"unterminated\r\n")
    else:  # Parquet holds one type per column: the junk goes to a second file of the same glob, as text
        good = [r for r in records if not r.get("_junk")]
        pq.write_table(pa.Table.from_pylist(good), path)
        junk = [{k: _text(v) for k, v in r.items() if k != "_junk"} for r in records if r.get("_junk")]
        pq.write_table(pa.Table.from_pylist(junk), path.with_name("junk-" + path.name))


def _text(value) -> str:
    return value if isinstance(value, str) and "\udc80" not in value else json.dumps(value, default=repr)


def junk_records(good: list[dict], rng: random.Random) -> list[dict]:
    """Per good record and field, a copy with that field junk; then copies with every field junk."""
    out = []
    for record in good:
        for field in record:
            out.append({**record, field: rng.choice(JUNK)})
    out += [{field: rng.choice(JUNK) for field in good[0]} for _ in range(10)]
    out += [{} for _ in range(2)]
    rng.shuffle(out)
    return [{**record, "_junk": True} for record in out]


def check(items: list, family: str, good_rows: int, tmp_path: Path) -> dict:
    reasons = {item.reason for item in items if isinstance(item, RowQuarantined)}
    assert reasons <= set(REASONS), reasons - set(REASONS)
    assert {item.reason for item in items if isinstance(item, RowFiltered)} <= set(FILTER_REASONS)
    assert all(isinstance(item, RowQuarantined) and item.file or not isinstance(item, RowQuarantined) for item in items)
    report = curate(items, tmp_path / f"out-{family}", source=family, shard_rows=64)
    assert report["accounted"] and report["rows_in"] == len(items) + sum(
        item.rows - 1 for item in items if isinstance(item, RowFiltered))
    assert report["rows_kept"] >= good_rows  # the good records are kept whatever the junk around them
    return report


@pytest.mark.parametrize("family", RECORD_FAMILIES)
def test_junk_in_every_field_never_stops_a_record_source(family, tmp_path):
    options = family_options(family)
    root = tmp_path / "root"
    good_rows = build_fixture(family, root, options)
    with_outside(root)
    path = root / concrete(options["file"])
    good = read_records(path)
    junk = junk_records(good, random.Random(family))
    write_junk(path, good + junk)
    if path.suffix != ".parquet":
        junk = [{k: v for k, v in record.items() if k != "_junk"} for record in junk]
    items = list(iter_outcomes(family, root, options))
    broken_lines = {".jsonl": 3, ".csv": 1, ".tsv": 1}.get(path.suffix, 0)
    assert len(items) == len(good) + len(junk) + broken_lines  # one outcome per record, none lost
    secret = (root.parent / "secret.png").read_bytes()
    assert all(image.get("bytes") != secret for item in items if type(item) is dict for image in item["images"])
    report = check(items, family, good_rows, tmp_path)
    assert report["quarantined"] > 0


def test_junk_never_stops_a_box_or_file_source(tmp_path):
    """The file-based families: junk CSV rows, label lines, box files, masks, reports, images."""
    rng = random.Random(7)
    cases = {}
    # NIH BBox CSV and DeepLesion DL_info.csv: junk rows appended to the published files
    for family in ("nih_bbox_csv", "deeplesion_csv"):
        root = tmp_path / family
        options = family_options(family)
        good = build_fixture(family, root, options)
        with_outside(root)
        path = root / adapter(family).Options.model_validate(options).file
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for _ in range(25):
                writer.writerow([_text(rng.choice(JUNK)) for _ in range(18)])
            writer.writerow(["../../secret.png", "Mass", "1", "1", "5", "5"])
        cases[family] = (root, options, good)
    # YOLO labels, SLAKE detection.json, masks, image folders, MIMIC study folders, COCO
    root = tmp_path / "yolo"
    options = family_options("yolo")
    good = build_fixture("yolo", root, options)
    for i, line in enumerate(["3 nan 0.5 0.1 0.1", "3 inf 1 1 1", "x y z", "99999999999999999999 0.5 0.5 0.1 0.1",
                              "3 0.5 0.5 1e400 0.1", "\x00\x07"]):
        write_file(root, f"labels/junk{i}.txt", line + "\n")
    write_file(root, "labels/bytes.txt", b"\xff\xfe\n")
    cases["yolo"] = (root, options, good)
    root = tmp_path / "box_json"
    options = family_options("box_json_per_image")
    good = build_fixture("box_json_per_image", root, options)
    for i, content in enumerate(["[{\"Liver\": [1, 2, \"nan\", 4]}]", "{\"not\": \"a list\"}", "not json",
                                 "[{\"Liver\": [1, 2]}]", "[{\"Liver\": [Infinity, 1, 2, 3]}]", "[1, 2]"]):
        write_file(root, f"imgs/junk{i}/detection.json", content)
        write_file(root, f"imgs/junk{i}/source.jpg", png_bytes(seed=i))
    (root / "imgs" / "linked").mkdir()
    (root / "imgs" / "linked" / "detection.json").symlink_to(root / "imgs" / "junk0" / "detection.json")
    write_file(tmp_path, "outside_det/detection.json", "[{\"Liver\": [1, 2, 3, 4]}]")
    (root / "imgs" / "escaped").symlink_to(tmp_path / "outside_det")
    cases["box_json_per_image"] = (root, options, good)
    root = tmp_path / "masks"
    options = family_options("instance_masks")
    good = build_fixture("instance_masks", root, options)
    write_file(root, "images/nomask.png", png_bytes(seed=3))
    write_file(root, "images/badmask.png", png_bytes(seed=4))
    write_file(root, "masks/badmask.png", b"not an image")
    cases["instance_masks"] = (root, options, good)
    root = tmp_path / "npz"
    options = family_options("instance_masks_npz")
    good = build_fixture("instance_masks_npz", root, options)
    arrays = dict(np.load(root / options["file"]))
    images, labels = arrays["X"], arrays["y"]
    junk_images = np.concatenate([images, images[:3]])
    junk_images[-3, 0, 0, 0], junk_images[-2, 1, 1, 0] = np.nan, np.inf
    junk_labels = np.concatenate([labels, np.zeros_like(labels[:3])])
    junk_labels[-1, 0, 0, 1] = -5  # a negative instance id: still an instance
    np.savez(root / options["file"], X=junk_images, y=junk_labels)
    cases["instance_masks_npz"] = (root, options, good)
    root = tmp_path / "folder"
    options = {"image_dir": "images", "text_from": "sidecar"}
    good = build_fixture("image_folder", root, options)
    write_file(root, "images/x/broken.png", b"\x89PNG\r\n\x1a\n broken")
    write_file(root, "images/x/ok.png", png_bytes(seed=5))
    write_file(root, "images/x/ok.txt", b"\xff caption bytes")
    write_file(tmp_path, "secret2.png", png_bytes(seed=98))
    (root / "images" / "x" / "out.png").symlink_to(tmp_path / "secret2.png")
    cases["image_folder"] = (root, options, good)
    root = tmp_path / "mimic"
    options = {"layout": "study_folders", "image_dir": "files", "image_suffixes": [".jpg"]}
    good = build_fixture("report", root, options)
    write_file(root, "files/p10/p10000099/s59999999.txt", b"FINDINGS: \xff\xfe broken\n")
    write_file(tmp_path, "stolen.txt", "FINDINGS: stolen. IMPRESSION: stolen.")
    (root / "files" / "p10" / "p10000099" / "s59999998.txt").symlink_to(tmp_path / "stolen.txt")
    cases["report"] = (root, options, good)
    root = tmp_path / "coco"
    options = family_options("coco")
    good = build_fixture("coco", root, options)
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"] += [{"id": 9, "image_id": 0, "category_id": 1, "bbox": [float("nan"), 1, 2, 3]},
                            {"id": 10, "image_id": 0, "category_id": 1, "bbox": "1,2,3,4"},
                            {"id": 11, "image_id": 1, "bbox": [1, 1, 2, 2]}, [1, 2], {"image_id": 5}]
    data["images"] += [{"id": 5, "file_name": "../../secret.png"}, {"id": 6, "file_name": None}, {"id": 7}]
    (root / "annotations.json").write_text(json.dumps(data))
    cases["coco"] = (root, options, good)

    assert set(cases) | set(RECORD_FAMILIES) == set(ADAPTERS)
    for family, (root, options, good) in cases.items():
        items = list(iter_outcomes(family, root, options))
        assert all(not (type(item) is dict and any("secret" in (i.get("path") or "") or "stolen" in str(item)
                                                   for i in item["images"])) for item in items), family
        report = check(items, family, good, tmp_path)
        assert report["quarantined"] > 0, family

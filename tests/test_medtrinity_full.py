"""MedTrinity-25M's full release as the hub snapshot ships it (version ``full``, the default):
``25M_full/*.parquet`` metadata (file_name, caption, source; images not embedded) and the
``25M_accessible/*.tar.zst`` shards unpacked into ``25M_accessible_unzipped/``, an image six folders
deep. Each row's image is found by name through a per-file index of that tree
(``adapters/image_tree.py``); rows of sources not in the accessible shards are filtered
(``image_not_released``); the benchmark's 1-in-10000 share (by file_name) stays out of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import jpeg_bytes, png_bytes, write_file
from registry_sources import REGISTRY, registry_fixture

from medmo_pipeline.data.adapters import image_tree
from medmo_pipeline.data.adapters.common import AdapterOptions, other_part
from medmo_pipeline.data.benchmarks.loading import read_benchmark
from medmo_pipeline.data.benchmarks.registry import load_registry as load_benchmarks
from medmo_pipeline.data.outcomes import RowError
from medmo_pipeline.data.registry import SourceUnavailable

TREE = "25M_accessible_unzipped"
REST = AdapterOptions(holdout_one_in=10000, holdout_part="rest")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    image_tree.forget()
    yield registry_fixture(tmp_path, monkeypatch)
    image_tree.forget()


def names(count: int, *, heldout: bool = False) -> list[str]:
    """MedTrinity-like file names (uuid1 + .jpg) in the training part, or in the benchmark's share."""
    found = []
    for i in range(200_000):
        name = f"8031efe0-1b5c-11ef-8929-{i:012x}.jpg"
        if other_part(name, REST) == heldout:
            found.append(name)
            if len(found) == count:
                return found
    raise AssertionError("no such names")


def deep(folder: int, name: str) -> str:
    """Where an unpacked shard puts an image: six folders below the tree."""
    return f"{TREE}/dataset_shard_{folder}/local2/medtrinity/{folder}/{folder % 3}/images/{name}"


def write_full_release(root: Path, rows: list[dict]) -> None:
    """``rows`` split over two metadata files, with a column of the release's the layout does not read."""
    half = len(rows) // 2
    for number, part in enumerate((rows[:half], rows[half:])):
        table = pa.Table.from_pylist([{**row, "index": n} for n, row in enumerate(part)], schema=pa.schema([
            ("file_name", pa.string()), ("caption", pa.string()), ("source", pa.string()), ("index", pa.int64())]))
        (root / "25M_full").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / "25M_full" / f"train-{number:05d}-of-00002.parquet")


def write_two_rows(root: Path) -> None:
    write_full_release(root, [{"file_name": name, "caption": "A caption.", "source": "nih_chest"} for name in names(2)])


def test_full_is_the_default_and_demo_the_other_version():
    entry = REGISTRY.get("medtrinity")
    assert entry.version == "full" and entry.versions() == ["full", "demo"]
    (full,) = entry.adapters_for("full")
    assert full.options["file"] == "25M_full/*.parquet" and full.options["image_lookup"] == "tree"
    assert full.options["image_dir"] == TREE and full.options["id_field"] == "file_name"
    (demo,) = entry.adapters_for("demo")
    assert demo.options["file"] == "data/*.parquet" and demo.options["id_field"] == "id"
    how = entry.origin.how_to_get()
    assert "--include '25M_full/*' '25M_accessible/*'" in how and "tar --zstd -xf" in how and TREE in how


def test_the_full_release_keeps_found_images_and_filters_the_unreleased(tmp_path, registry):
    _, curate = registry
    root = tmp_path / "data" / "medtrinity"
    every, (held,) = names(7), names(1, heldout=True)
    found, unreleased, twice, linked = every[:3], every[3:5], every[5], every[6]  # unreleased: not in the tree
    for i, name in enumerate([*found, held]):
        write_file(root, deep(i, name), jpeg_bytes(seed=i))
    write_file(root, deep(7, twice), jpeg_bytes(seed=7))  # one name in two folders of two shards
    write_file(root, deep(8, twice), jpeg_bytes(seed=8))
    write_file(tmp_path, "secret.png", png_bytes(seed=99))  # outside the dataset root
    target = root / deep(9, linked)
    target.parent.mkdir(parents=True)
    target.symlink_to(tmp_path / "secret.png")
    rows = [{"file_name": name, "caption": f"The image is a chest X-ray number {i}.", "source": "nih_chest"}
            for i, name in enumerate(found)]
    rows += [{"file_name": name, "caption": "An image of a source outside the accessible shards.", "source": "chexpert"}
             for name in unreleased]
    rows += [{"file_name": twice, "caption": "Which of two?", "source": "nih_chest"},
             {"file_name": linked, "caption": "A link out of the root.", "source": "nih_chest"},
             {"file_name": held, "caption": "The benchmark's row.", "source": "nih_chest"},
             {"file_name": " ", "caption": "No file name.", "source": "nih_chest"}]
    write_full_release(root, rows)
    built = []
    real = image_tree.ImageTree
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_tree, "ImageTree", lambda *a, **k: built.append(1) or real(*a, **k))
        report = curate("medtrinity")
    assert len(built) == 1  # the tree is walked once per curation, not per row or per metadata file
    assert sorted(row["id"] for row in report["kept"]) == sorted(f"medtrinity:{name}" for name in found)
    assert report["kept_by_id"][f"medtrinity:{found[0]}"]["messages"][-1]["content"] == rows[0]["caption"]
    assert report["rows_in"] == len(rows) == 9
    assert report["filtered_by_reason"] == {"image_not_released": 2, "subset": 1}
    assert report["quarantined_by_reason"] == {"image_ambiguous": 1, "unsafe_path": 1, "missing_field": 1}
    assert report["accounted"] and report["rows_in"] == report["rows_kept"] + report["quarantined"] + report["filtered"]
    details = {reason: detail for reason, _, _, detail in report["problem_details"]}
    assert deep(7, twice)[len(TREE) + 1:] in details["image_ambiguous"]
    assert deep(8, twice)[len(TREE) + 1:] in details["image_ambiguous"]
    secret = (tmp_path / "secret.png").read_bytes()
    assert all(image["bytes"] != secret for row in report["kept"] for image in row["images"])
    # the benchmark evaluates exactly the share training left out, keyed by the same file_name
    benchmark = load_benchmarks().get("medtrinity")
    evaluated = read_benchmark(benchmark, root)
    assert [row["id"] for row in evaluated] == [f"medtrinity:{held}"]
    assert {row["id"].split(":", 1)[1] for row in evaluated}.isdisjoint(
        row["id"].split(":", 1)[1] for row in report["kept"])


def test_the_registry_fixture_of_the_default_layout_curates(tmp_path, registry):
    build, curate = registry
    build("medtrinity")
    report = curate("medtrinity")
    assert report["rows_kept"] == 3 and report["quarantined"] == 0


@pytest.mark.parametrize("files", [None, 0, 1])
def test_a_release_whose_images_are_not_unpacked_there_stops_the_source(tmp_path, registry, files):
    """No unpacked folder at all; one unpacked elsewhere (the folder here empty); another release's
    shards (a file, none of the records')."""
    _, curate = registry
    root = tmp_path / "data" / "medtrinity"
    if files is not None:
        (root / TREE).mkdir(parents=True)
    for _ in range(files or 0):
        write_file(root, deep(0, "other.jpg"), jpeg_bytes())
    write_two_rows(root)
    message = (f"{TREE} is missing.*tar --zstd -xf" if files is None
               else f"none of its 2 records found its image file: {TREE}/ holds {files} files")
    with pytest.raises(SourceUnavailable, match=message):
        curate("medtrinity")


def test_a_folder_linked_out_of_the_root_stops_the_source(tmp_path, registry):
    _, curate = registry
    root = tmp_path / "data" / "medtrinity"
    (name,) = names(1)
    write_file(tmp_path, f"elsewhere/{name}", jpeg_bytes())
    (root / TREE).mkdir(parents=True)
    (root / TREE / "shard").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    write_full_release(root, [{"file_name": name, "caption": "A caption.", "source": "nih_chest"}] * 2)
    with pytest.raises(SourceUnavailable, match="symlinked folder leading outside the dataset root"):
        curate("medtrinity")


def test_the_index_holds_twelve_bytes_a_file_whatever_the_rows(tmp_path):
    tree = tmp_path / "tree"
    files = [f"{folder}/a/b/c/d/e/img{i}.jpg" for folder in ("s0", "s1") for i in range(40)] + ["s1/a/b/c/d/e/img0.jpg"]
    for path in dict.fromkeys(files):
        write_file(tree, path, b"x")
    index = image_tree.ImageTree(tree)
    assert index.keys.dtype == np.int64 and index.folder_of.dtype == np.uint32
    assert len(index) == 80 and index.nbytes == 12 * 80  # one entry a file: nothing per row looked up
    assert np.all(index.keys[:-1] <= index.keys[1:])  # sorted: looked up by searchsorted
    assert index.folders == ["s0/a/b/c/d/e", "s1/a/b/c/d/e"]
    assert index.find("img3.jpg") == ["s0/a/b/c/d/e/img3.jpg", "s1/a/b/c/d/e/img3.jpg"]
    assert index.find("e/img3.jpg") == ["s0/a/b/c/d/e/img3.jpg", "s1/a/b/c/d/e/img3.jpg"]
    assert index.find("s1/a/b/c/d/e/img3.jpg") == ["s1/a/b/c/d/e/img3.jpg"]
    assert index.find("img99.jpg") == []
    for _ in range(200):
        index.find("img99.jpg")
    assert index.nbytes == 12 * 80
    with pytest.raises(RowError):
        index.find(".")


def test_a_key_shared_by_two_names_is_confirmed_on_disk(tmp_path, monkeypatch):
    write_file(tmp_path / "tree", "a/one.jpg", b"x")
    write_file(tmp_path / "tree", "b/two.jpg", b"x")
    monkeypatch.setattr(image_tree, "hash", lambda name: 7, raising=False)  # every name collides
    index = image_tree.ImageTree(tmp_path / "tree")
    assert index.find("one.jpg") == ["a/one.jpg"] and index.find("two.jpg") == ["b/two.jpg"]
    assert index.find("three.jpg") == []

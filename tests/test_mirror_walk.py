"""Walking a mirror as it is laid out on disk: a folder of the layout may be a symlink (a large
mirror spread over folders), a file may be named in upper case, a YOLO image may have no label
file. Each such file ends kept, quarantined or filtered, and the data version sees what curation
reads; a folder linked outside the dataset root is never listed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fixtures_formats import build_fixture, write_mimic_split

from medmo_pipeline.data.adapters import iter_outcomes
from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
from medmo_pipeline.data.registry import load_registry
from medmo_pipeline.data.sources import files_in_path_order
from medmo_pipeline.safe_paths import UnsafePathError, safe_glob

REGISTRY = load_registry()


def options_of(name: str) -> dict:
    return dict(REGISTRY.get(name).adapters[0].options)


def counts(outcomes: list) -> tuple[int, int, int]:
    """(kept, quarantined, filtered) of an adapter's outcomes."""
    return (sum(type(o) is dict for o in outcomes), sum(type(o) is RowQuarantined for o in outcomes),
            sum(type(o) is RowFiltered for o in outcomes))


@pytest.fixture
def mimic(tmp_path) -> Path:
    """MIMIC-CXR's study folders, with patient p11 kept in store/ and linked in as files/p11."""
    root = tmp_path / "mimic_cxr"
    build_fixture("report", root, options_of("mimic_cxr"))
    patient = root / "store" / "p11" / "p11000001"
    shutil.copytree(root / "files" / "p10" / "p10000032", patient)
    for report in sorted(patient.glob("s5*.txt")):  # studies of their own: s6...
        report.rename(report.with_name("s6" + report.name[2:]))
        (patient / report.stem).rename(patient / ("s6" + report.stem[2:]))
    (root / "files" / "p11").symlink_to(Path("..") / "store" / "p11")
    write_mimic_split(root)  # the split table lists the linked patient's studies too
    return root


def test_a_patient_folder_linked_inside_the_root_gives_rows_for_its_reports(mimic):
    found = [p.relative_to(mimic / "files").as_posix()
             for p in safe_glob(mimic / "files", "**/s*.txt", refuse_outside=False, root=mimic)]
    assert found == [f"p10/p10000032/s5000000{s}.txt" for s in range(3)] + [
        f"p11/p11000001/s6000000{s}.txt" for s in range(3)]
    # The registry's own layout gives the linked patient's studies with their images
    outcomes = list(iter_outcomes("report", mimic, options_of("mimic_cxr")))
    rows = [o for o in outcomes if type(o) is dict]
    assert counts(outcomes) == (6, 0, 0)
    linked = [row for row in rows if "p11/" in row["images"][0]["path"]]
    assert len(linked) == 3 and all("p11/p11000001/s6" in row["images"][0]["path"] for row in linked)
    # The data version sees the linked patient's files under files/, and store/ once
    walked = [p.relative_to(mimic).as_posix() for p in files_in_path_order(mimic)]
    assert "files/p11/p11000001/s60000000.txt" in walked and not any(p.startswith("store/") for p in walked)
    assert len(walked) == len(set(walked)) == 2 * 9 + 1  # + the split table


def test_a_link_back_to_an_ancestor_does_not_loop(mimic):
    (mimic / "files" / "p10" / "p10000032" / "up").symlink_to(Path("..") / "..")
    (mimic / "store" / "p11" / "to_root").symlink_to(mimic)
    found = safe_glob(mimic, "**/s*.txt", refuse_outside=False)
    assert [p.relative_to(mimic).as_posix() for p in found] == [
        f"files/p10/p10000032/s5000000{s}.txt" for s in range(3)] + [
        f"files/p11/p11000001/s6000000{s}.txt" for s in range(3)]
    walked = [p.relative_to(mimic).as_posix() for p in files_in_path_order(mimic)]
    assert len(walked) == len(set(walked)) == 2 * 9 + 1  # + the split table


def test_a_folder_linked_outside_the_root_stops_the_walk_naming_it(mimic, tmp_path):
    shutil.copytree(mimic / "store" / "p11", tmp_path / "elsewhere" / "p12")
    (mimic / "files" / "p12").symlink_to(tmp_path / "elsewhere" / "p12")
    with pytest.raises(UnsafePathError, match=r"^p12 is a symlinked folder leading outside the dataset root.*"
                                              r"copy or bind-mount"):
        safe_glob(mimic / "files", "**/s*.txt", refuse_outside=False, root=mimic)
    with pytest.raises(UnsafePathError, match="files/p12 is a symlinked folder"):
        list(iter_outcomes("report", mimic, {**options_of("mimic_cxr"), "image_dir": "",
                                             "reports_glob": "files/**/s*.txt"}))
    with pytest.raises(UnsafePathError, match="p12 is a symlinked folder"):
        list(iter_outcomes("report", mimic, options_of("mimic_cxr")))
    # Not listed by the data version either
    assert not any("p12" in p.as_posix() for p in files_in_path_order(mimic))


def test_a_class_folder_linked_inside_the_root_is_read(tmp_path):
    """TCGA's class folders, one of them kept elsewhere in the mirror and linked in."""
    root = tmp_path / "tcga"
    options = options_of("tcga")
    build_fixture("image_folder", root, options)
    images = root / options.get("image_dir", "images")
    before = counts(list(iter_outcomes("image_folder", root, options)))
    first = min(p for p in images.iterdir() if p.is_dir())
    shutil.move(first, root / "store")
    first.symlink_to(Path("..") / "store")
    assert counts(list(iter_outcomes("image_folder", root, options))) == before and before[0] > 0


def test_a_non_recursive_component_through_a_folder_linked_outside_still_matches(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.txt").write_text("x")
    (tmp_path / "root" / "out").symlink_to(tmp_path / "outside")
    assert safe_glob(tmp_path / "root", "*/x.txt", refuse_outside=False) == [tmp_path / "root" / "out" / "x.txt"]
    with pytest.raises(UnsafePathError, match="outside the dataset root"):
        safe_glob(tmp_path / "root", "*/x.txt")


@pytest.mark.parametrize("name, suffix", [("tcga", ".PNG"), ("kipa22", ".DCM")])
def test_upper_case_names_are_found_by_lowercase_patterns(tmp_path, name, suffix):
    options = options_of(name)
    root = tmp_path / name
    build_fixture("image_folder", root, options)
    renamed = min((root / "images").rglob(f"*{suffix.lower()}"))
    renamed.rename(renamed.with_suffix(suffix))
    on_disk = sorted(p for p in (root / "images").rglob("*") if p.is_file())
    assert safe_glob(root / "images", options["pattern"]) == on_disk
    outcomes = list(iter_outcomes("image_folder", root, options))
    assert counts(outcomes) == (len(on_disk), 0, 0)
    assert any(row["images"][0]["path"].endswith(suffix) for row in outcomes)


def test_a_yolo_image_without_a_label_file_is_filtered_like_an_empty_one(tmp_path):
    options = options_of("grazpedwri_dx")
    root = tmp_path / "grazpedwri_dx"
    build_fixture("yolo", root, options)
    shutil.copy(root / "images" / "0001_0.png", root / "images" / "0002_0.png")  # no labels/0002_0.txt
    shutil.copy(root / "images" / "0001_0.png", root / "images" / "0003_0.png")
    (root / "labels" / "0003_0.txt").write_text("")
    outcomes = list(iter_outcomes("yolo", root, options))
    kept, quarantined, filtered = counts(outcomes)
    # Two labelled images give a row and a skipped 'text' box each; the empty label file and the
    # image without one are both background images
    assert (kept, quarantined, filtered) == (2, 0, 4) and len(outcomes) == kept + quarantined + filtered
    no_row = [o.detail for o in outcomes if type(o) is RowFiltered and o.reason == "no_row"]
    assert len(no_row) == 2 and "0003_0.txt" in no_row[0] and no_row[1].startswith("images/0002_0.png: no labels/")


def test_a_yolo_image_linked_out_of_the_root_is_named_not_read(tmp_path):
    options = options_of("grazpedwri_dx")
    root = tmp_path / "grazpedwri_dx"
    build_fixture("yolo", root, options)
    (tmp_path / "secret.png").write_bytes(b"not for reading")
    os.symlink(tmp_path / "secret.png", root / "images" / "0009_0.png")
    outcomes = list(iter_outcomes("yolo", root, options))
    assert counts(outcomes) == (2, 0, 3)
    assert [o.detail.split(":")[0] for o in outcomes if o.__class__ is RowFiltered and o.reason == "no_row"] == [
        "images/0009_0.png"]

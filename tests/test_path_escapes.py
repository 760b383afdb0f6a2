"""Paths read from data files (and found by globs) that try to leave the dataset root, or name
something that is no image file: each is its record's quarantine, naming file and record, and
nothing outside the root is opened, listed, or followed past the first step out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fixtures_formats import build_fixture, png_bytes
from guards import alarm, cpu_seconds_limit

from medmo_pipeline.data.adapters import iter_outcomes
from medmo_pipeline.data.adapters.common import AdapterOptions, load_image, row_problem
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.registry import load_registry
from medmo_pipeline.safe_paths import UnsafePathError, safe_glob, safe_join


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A root with one image; outside it a pipe (opening it would hang), a loop of links, a folder."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "images").mkdir(parents=True)
    (outside / "sub").mkdir(parents=True)
    (root / "images" / "ok.png").write_bytes(png_bytes())
    os.mkfifo(outside / "sub" / "hang.png")
    (outside / "l1").symlink_to("l2")
    (outside / "l2").symlink_to("l1")
    return root


def outcome(root: Path, value: str) -> tuple[str, str]:
    """(reason, detail) of one record naming ``value``, as ``guarded`` quarantines it; ('kept', path)."""
    try:
        return "kept", load_image(root, value, AdapterOptions())["path"]
    except Exception as error:  # noqa: BLE001 - what guarded does
        problem = row_problem(error, "train.json", "row 2")
        return problem.reason, problem.detail


def test_a_link_out_to_a_loop_is_unsafe_path_like_any_link_out(mirror):
    """Path.resolve followed the link out and stat'ed its end: a loop out there was a RuntimeError
    (malformed_record), telling the row what lies outside."""
    outside = mirror.parent / "outside"
    (mirror / "images" / "to_loop.png").symlink_to(outside / "l1")
    (mirror / "images" / "to_pipe.png").symlink_to(outside / "sub" / "hang.png")
    (mirror / "images" / "to_folder").symlink_to(outside / "sub")
    with alarm(10):
        found = [outcome(mirror, name) for name in ("images/to_loop.png", "images/to_pipe.png",
                                                    "images/to_folder/hang.png")]
    assert [reason for reason, _ in found] == ["unsafe_path"] * 3
    assert all(detail.startswith("train.json row 2: path 'images/to_") and f"leads to {outside}," in detail
               for _, detail in found)  # where the link leads, never past it


def test_a_loop_of_links_inside_the_root_is_unsafe_path(mirror):
    (mirror / "images" / "a.png").symlink_to("b.png")
    (mirror / "images" / "b.png").symlink_to("a.png")
    (mirror / "images" / "self.png").symlink_to("self.png")
    for name in ("images/a.png", "images/self.png"):
        reason, detail = outcome(mirror, name)
        assert reason == "unsafe_path"
        assert detail == f"train.json row 2: path {name!r} goes round a loop of symlinks (more than 40 followed)"


def test_links_inside_the_root_are_followed_whichever_way_they_are_written(mirror):
    (mirror / "store").mkdir()
    (mirror / "store" / "x.png").write_bytes(png_bytes(seed=1))
    (mirror / "images" / "rel.png").symlink_to(Path("..") / "store" / "x.png")
    (mirror / "images" / "abs.png").symlink_to(mirror / "store" / "x.png")
    (mirror / "images" / "round.png").symlink_to(Path("..") / ".." / mirror.name / "store" / "x.png")
    (mirror / "images" / "chain.png").symlink_to("rel.png")
    for name in ("rel", "abs", "round", "chain"):
        assert outcome(mirror, f"images/{name}.png") == ("kept", f"images/{name}.png")
    (mirror / "images" / "sibling.png").symlink_to(Path("..") / ".." / "outside" / "sub" / "hang.png")
    assert outcome(mirror, "images/sibling.png")[0] == "unsafe_path"


def test_a_folder_a_pipe_or_the_root_named_as_an_image_is_unreadable_file_never_opened(mirror):
    """They were image_missing, as if nothing were there."""
    os.mkfifo(mirror / "images" / "pipe.png")
    (mirror / "images" / "folder.png").mkdir()
    with alarm(10):
        for name in ("images/pipe.png", "images/folder.png", ".", "./", "images"):
            assert outcome(mirror, name) == ("unreadable_file", (
                f"train.json row 2: image path {name!r} is not a regular file (a folder, a pipe or a device)"))


@pytest.mark.parametrize("name", ["a" * 5000, "images/" + "b" * 300])
def test_a_name_too_long_for_the_file_system_is_said_briefly(mirror, name):
    reason, detail = outcome(mirror, name)
    assert reason == "unreadable_file" and detail.endswith("...: File name too long") and len(detail) < 200


def test_a_path_of_thousands_of_components_is_settled_at_once(mirror):
    """Each step of the walk had checked the path's every parent: "a/" x 3,000 took minutes."""
    with cpu_seconds_limit(2):
        assert safe_join(mirror, "a/" * 3000 + "x.png") == mirror.resolve().joinpath(*["a"] * 3000, "x.png")
        reason, _ = outcome(mirror, "images/" + "a/" * 3000 + "x.png")
    assert reason == "unreadable_file"  # the kernel's "File name too long", said briefly


@pytest.mark.parametrize("name", ["\\etc\\passwd", "\\", "\\x.png"])
def test_a_windows_path_rooted_without_a_drive_is_absolute(mirror, name):
    """Joined here, it named a folder called '\\' under the root."""
    assert outcome(mirror, name) == (
        "unsafe_path", f"train.json row 2: path {name!r} is absolute; data files must use paths relative to the root")
    with pytest.raises(UnsafePathError):
        safe_join(mirror, name)


def test_a_folder_linked_outside_is_not_listed_by_a_star_component(mirror):
    """'*/*.png' listed the outside folder, naming its files in the quarantine table; '*/x.txt'
    (plain names after the link) still gives its one path for the caller to quarantine."""
    (mirror / "images" / "out").symlink_to(mirror.parent / "outside" / "sub")
    with alarm(10), pytest.raises(UnsafePathError, match=r"^images/out is a symlinked folder leading outside"):
        list(iter_outcomes("image_folder", mirror, {"pattern": "*/*/*"}))
    assert safe_glob(mirror, "*/*/secret.png", refuse_outside=False) == [mirror / "images" / "out" / "secret.png"]


def test_a_study_folder_linked_outside_quarantines_its_study_unlisted(tmp_path):
    """MIMIC-CXR's study folder sXXXXXXXX/ linked out: study.glob listed it, then each image was
    refused; the study is now quarantined before its folder is listed."""
    options = dict(load_registry().get("mimic_cxr").adapters[0].options)
    root = tmp_path / "mimic_cxr"
    build_fixture("report", root, options)
    study = min(p for p in (root / "files").rglob("s*") if p.is_dir())
    shutil.move(study, tmp_path / "elsewhere")
    study.symlink_to(tmp_path / "elsewhere")
    options["reports_glob"] = "*/*/s*.txt"  # '**' stops at the linked folder, as test_mirror_walk checks
    outcomes = list(iter_outcomes("report", root, options))
    problems = [o for o in outcomes if isinstance(o, RowQuarantined)]
    assert [p.reason for p in problems] == ["unsafe_path"] and sum(type(o) is dict for o in outcomes) >= 1
    assert f"{study.relative_to(root / options['image_dir']).as_posix()}.txt" in problems[0].file
    assert "outside the dataset root" in problems[0].detail
    assert not any(inside.name in problems[0].detail for inside in (tmp_path / "elsewhere").iterdir())


def test_a_hardlink_to_a_file_outside_is_read_as_the_file_it_is(mirror):
    """A hard link is the file itself, under a second name: nothing tells it from a copy (making
    one takes write access to the root, as copying the file in does)."""
    (mirror.parent / "outside" / "secret.png").write_bytes(png_bytes(seed=5))
    os.link(mirror.parent / "outside" / "secret.png", mirror / "images" / "hard.png")
    assert outcome(mirror, "images/hard.png") == ("kept", "images/hard.png")


@pytest.mark.parametrize("name", ["~/x.png", "$HOME/x.png", "file:///etc/passwd", "http://host/x.png",
                                  "%2e%2e/%2e%2e/x.png", "\uff0e\uff0e/x.png", "\u2024\u2024/x.png", "..\uff0fx.png",
                                  "IMAGES/OK.PNG", "images/ok.png."])
def test_names_that_only_look_like_other_places_are_names_under_the_root(mirror, name):
    """Nothing expands, decodes or folds them: each is a file under the root, missing here."""
    assert outcome(mirror, name) == ("kept", name)  # an entry without bytes: curation's image_missing
    assert load_image(mirror, name, AdapterOptions())["bytes"] is None


def test_a_curated_registry_source_quarantines_the_one_record_naming_file_and_row(tmp_path, monkeypatch):
    """PubMedVision as published, one record's image a link out to a loop of links: that record is
    unsafe_path, named by file and row, and the source keeps its other records."""
    import json

    from registry_sources import REGISTRY, registry_fixture

    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("pubmed_vision")
    options = REGISTRY.get("pubmed_vision").adapters[0].options
    path = folder / options["file"]
    records = json.loads(path.read_text())
    (tmp_path / "l1").symlink_to("l2")
    (tmp_path / "l2").symlink_to("l1")
    (folder / "to_loop.png").symlink_to(tmp_path / "l1")
    field = options.get("image_field", "image")
    records[1][field] = ["to_loop.png"] if isinstance(records[1][field], list) else "to_loop.png"
    path.write_text(json.dumps(records))
    report = curate("pubmed_vision")
    assert [p[:3] for p in report["problem_details"]] == [("unsafe_path", options["file"], "row 2")]
    assert "'to_loop.png' leads to" in report["problem_details"][0][3]
    assert len(report["kept"]) == len(records) - 1

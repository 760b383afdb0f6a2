"""Hostile inputs against the session's new code: the image-tree index (MedTrinity-25M), the masks'
``pattern`` / ``mask_name``, MIMIC-CXR's split table, ``text`` of numbers, and the source
fingerprint's walk. Real functions on real files in ``tmp_path``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from guards import cpu_seconds_limit
from pydantic import ValidationError

from medmo_pipeline.data.adapters import masks, report
from medmo_pipeline.data.adapters.common import text
from medmo_pipeline.data.adapters.image_tree import MAX_FOUND, ImageTree
from medmo_pipeline.data.curation.quarantine import storable
from medmo_pipeline.data.outcomes import RowError, RowQuarantined
from medmo_pipeline.data.sources import _files_digest
from medmo_pipeline.safe_paths import MAX_FOLDER_DEPTH, UnsafePathError, safe_glob


@pytest.fixture
def deep_trees():
    """Removes the trees ``_nested`` made once the test is done: pytest's own clean-up of its temporary
    folders (``shutil.rmtree``, recursive) raised RecursionError on a tree 1,500 folders deep, and
    failed the whole run after every test had passed."""
    made: list[Path] = []
    yield made
    for base in made:
        subprocess.run(["rm", "-rf", "--", str(base)], check=True)  # rm walks without recursion limits


def _nested(base: Path, depth: int, made: list[Path] | None = None) -> Path:
    """``depth`` folders named ``d`` one in another below ``base``, a file in the deepest (``base``
    appended to ``made``, the ``deep_trees`` fixture's list, to be removed after the test)."""
    if made is not None:
        made.append(base)
    base.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(base, os.O_RDONLY)
    for _ in range(depth):  # a folder at a time, by descriptor: Path.mkdir(parents=True) recurses
        os.mkdir("d", dir_fd=descriptor)
        below = os.open("d", os.O_RDONLY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = below
    os.close(os.open("x.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=descriptor))
    os.close(descriptor)
    return base.joinpath(*["d"] * depth)


def test_a_tree_far_deeper_than_any_layout_stops_naming_it_not_a_recursion_error(tmp_path, deep_trees):
    # 1,500 nested folders: RecursionError (naming nothing) in the walk; before the walk was bounded,
    # the glob's per-component check of each of them took 43 s
    _nested(tmp_path / "tree", 1500, deep_trees)
    with cpu_seconds_limit(10), pytest.raises(UnsafePathError, match=f"more than {MAX_FOLDER_DEPTH} folders deep"):
        ImageTree(tmp_path / "tree", tmp_path)


def test_a_tree_as_deep_as_the_bound_is_walked(tmp_path):
    _nested(tmp_path / "tree", MAX_FOLDER_DEPTH)
    assert len(ImageTree(tmp_path / "tree", tmp_path)) == 1
    assert len(safe_glob(tmp_path / "tree", "**", root=tmp_path)) == MAX_FOLDER_DEPTH + 1


def test_the_fingerprint_walks_a_deep_tree(tmp_path, deep_trees):
    # RecursionError before; past the system's path length, the folder cannot be named and is skipped
    _nested(tmp_path / "deep", 1500, deep_trees)
    with cpu_seconds_limit(10):
        assert _files_digest(tmp_path)[2] == 1


def test_the_fingerprint_walk_keeps_path_order(tmp_path):
    for name in ("b/y", "a/z/w", "a-c", "a/b"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "f.jpg").write_bytes(b"")
    (tmp_path / "a" / "0.csv").write_text("x\n")
    from medmo_pipeline.data.sources import files_in_path_order
    assert [path.relative_to(tmp_path).as_posix() for path in files_in_path_order(tmp_path)] == [
        "a/0.csv", "a/b/f.jpg", "a/z/w/f.jpg", "a-c/f.jpg", "b/y/f.jpg"]


def test_loops_and_links_to_an_ancestor_are_walked_once(tmp_path):
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "x.jpg").write_bytes(b"")
    os.symlink("loop", tree / "loop")
    os.symlink("..", tree / "a" / "up")
    index = ImageTree(tree, tmp_path)  # the links are indexed by name (never read as images)
    assert index.folders == ["", "a"] and index.find("x.jpg") == ["a/x.jpg"]


def test_a_name_in_many_folders_is_ambiguous_after_a_few_stats(tmp_path):
    tree = tmp_path / "tree"
    for folder in range(1000):
        (tree / f"f{folder:04d}").mkdir(parents=True)
        (tree / f"f{folder:04d}" / "same.jpg").write_bytes(b"")
    index = ImageTree(tree, tmp_path)
    found = index.find("same.jpg")
    assert found == [f"f{folder:04d}/same.jpg" for folder in range(MAX_FOUND + 1)]
    assert index.find("f0999/same.jpg") == ["f0999/same.jpg"]


@pytest.mark.parametrize(("name", "error"), [
    ("/etc/passwd", UnsafePathError), ("../x.jpg", UnsafePathError), ("", UnsafePathError),
    ("x\0.jpg", UnsafePathError), (".", RowError)])
def test_hostile_file_names_are_refused(tmp_path, name, error):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "x.jpg").write_bytes(b"")
    with pytest.raises(error):
        ImageTree(tmp_path / "tree", tmp_path).find(name)


def test_odd_names_are_found_or_not_never_a_crash(tmp_path):
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    latin = os.fsdecode(b"n\xffl.jpg")
    for name in ("x.jpg", "nl\n.jpg", latin):
        (tree / "a" / name).write_bytes(b"")
    index = ImageTree(tree, tmp_path)
    assert index.find("nl\n.jpg") == ["a/nl\n.jpg"]
    assert index.find(latin) == [f"a/{latin}"]
    assert index.find("X.JPG") == []  # names differ by case: another file
    assert index.find("a") == []  # a folder's name: no file
    assert index.find("x" * 100_000) == []


def test_a_huge_study_id_in_the_split_table_is_one_quarantined_line(tmp_path):
    # 5,000 digits: int() raised "Exceeds the limit (4300 digits)", stopping the source naming nothing
    table = tmp_path / "split.csv"
    table.write_text("dicom_id,study_id,subject_id,split\n"
                     f"d1,{'1' * 5000},1,train\nd2,5,1,tr\x01ain\nd3,6,1,train\n")
    studies = report.split_studies(table, "split.csv", ["train"])
    quarantined = []
    with pytest.raises(StopIteration) as done:
        while True:
            quarantined.append(next(studies))
    assert done.value.value == {6: "train"}
    assert [(row.reason, row.record) for row in quarantined] == [("malformed_record", "line 2"),
                                                                  ("malformed_record", "line 3")]
    assert all(isinstance(row, RowQuarantined) and len(row.detail) < 200 for row in quarantined)


@pytest.mark.parametrize(("value", "expected"), [
    (np.float32(1.0), "1"), (np.float16(2.0), "2"), (np.float32(0.1), "0.1"), (np.float32("nan"), ""),
    (np.float64(3.0), "3"), (-0.0, "0"), (1e308, "1e+308"), (5e-324, "5e-324"), (np.int64(3), "3")])
def test_text_of_numbers(value, expected):
    assert text(value) == expected


@pytest.mark.parametrize("value", [np.float32("inf"), np.float16("-inf"), float("inf")])
def test_text_of_infinity_is_a_bad_number(value):
    with pytest.raises(RowError, match="bad_number"):
        text(value)


@pytest.mark.parametrize("template", [
    "{bogus}.tif", "{0}.tif", "{stem.__class__}.tif", "{number:>999999999}.tif", "{stem!r}.tif", "{stem",
    "/etc/{stem}.tif", "../{folder}/{stem}.tif"])
def test_a_mask_name_template_is_checked_at_load(template):
    with pytest.raises(ValidationError, match="mask_name"):
        masks.Options.model_validate({"mask_name": template})


@pytest.mark.parametrize("pattern", ["../*", "/etc/*"])
def test_a_mask_pattern_out_of_the_root_is_refused_at_load(pattern):
    with pytest.raises(ValidationError, match="pattern"):
        masks.Options.model_validate({"pattern": pattern})


def test_the_cell_tracking_template_still_loads():
    options = masks.Options.model_validate({"mask_name": "{folder}_GT/SEG/man_seg{number}.tif"})
    assert masks._mask_name("01/t007.tif", Path("/r/images/01/t007.tif"), options) == "images/01_GT/SEG/man_seg007.tif"


def test_storable_escapes_lone_surrogates():
    assert storable(os.fsdecode(b"a\xffb") + "\ud800") == "a\\udcffb\\ud800"
    assert storable("plain") == "plain"


@pytest.mark.parametrize("question", [
    "Q?\n" + "(A) " * 100_000, "Q?\n" + "A. x\n" * 250_000, "Q: " + " " * 1_000_000 + "(A) x (B) y",
    "Q?\n(A) x (B) y" + " (A)" * 100_000])
def test_cutting_a_questions_own_options_is_linear(question):
    from medmo_pipeline.data.adapters.choices import lettered_question
    with cpu_seconds_limit(5):
        assert lettered_question(question, ["x", "y"]).endswith("B. y\nAnswer with the option letter.")


def test_a_split_table_that_is_a_fifo_or_links_out_stops_the_source_unopened(tmp_path):
    from guards import alarm

    from medmo_pipeline.data.adapters.records import SourceLayoutError
    os.mkfifo(tmp_path / "split.csv")
    (tmp_path / "split2.csv").mkdir()
    os.symlink("/etc/passwd", tmp_path / "out.csv")
    with alarm(10):
        for name in ("split.csv", "split2.csv"):  # said to be no regular file, not "missing"
            with pytest.raises(SourceLayoutError, match=f"split table {name} .* is not a regular file"):
                report._split_path(tmp_path, name)
        with pytest.raises(UnsafePathError, match="outside the dataset root"):
            report._split_path(tmp_path, "out.csv")


def test_an_image_name_written_with_dot_or_doubled_slashes_is_found_as_written_plainly(tmp_path):
    write = tmp_path / "tree" / "a" / "b"
    write.mkdir(parents=True)
    (write / "x.jpg").write_bytes(b"x")
    tree = ImageTree(tmp_path / "tree", tmp_path)
    assert tree.find("./x.jpg") == tree.find("b//x.jpg") == tree.find("a/./b/x.jpg") == ["a/b/x.jpg"]

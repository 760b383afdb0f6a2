"""MIMIC-CXR's training entry reads only the official split's train studies.

MIMIC-CXR-JPG ships ``mimic-cxr-2.0.0-split.csv.gz`` beside ``files/`` (one row per image:
``dicom_id, study_id, subject_id, split``, split ``train`` / ``validate`` / ``test``). The
``mimic_cxr`` benchmark evaluates its test studies; the training entry (both layout versions) keeps
the train studies and counts every other study as filtered (``subset``): validate, test, and a
study the table does not list. A malformed row of the table is quarantined by its line; a missing
table stops the source, naming the file and where to get it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from benchmark_releases import build_release
from fixtures_formats import MIMIC_SPLIT_FILE, jpeg_bytes, write_file, write_mimic_split
from registry_sources import CREDENTIALS, REGISTRY, registry_fixture

from medmo_pipeline.data.adapters import report as report_adapter
from medmo_pipeline.data.adapters.records import SourceLayoutError
from medmo_pipeline.data.benchmarks import readers
from medmo_pipeline.data.benchmarks.loading import load_benchmark
from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
from medmo_pipeline.data.registry import SourceUnavailable, iter_source_rows

REPORT = " FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n FINDINGS:  Lungs are clear {n}.\n \n" \
         " IMPRESSION:  No acute process {n}.\n"
# study -> its split in the table (None: the table does not list it); two images each, as published
STUDIES = {
    "p10/p10000032/s50414267": "train",
    "p10/p10000032/s53189527": "train",
    "p10/p10000033/s51111111": "validate",
    "p10/p10000034/s52222222": "test",
    "p11/p11000035/s53333333": None,
    "p11/p11000036/s54444444": "train",  # one of its images is listed as test too (below)
}
TRAIN = {"s50414267", "s53189527"}
FIXTURE_STUDIES = {f"s5000000{s}" for s in range(3)}  # fixtures_formats.build_report's, all train
MALFORMED = ("bad-split,50414267,10000032,trian",  # a split none of train / validate / test
             "no-study,,10000032,train",  # no study_id
             "not-a-number,s5041,10000032,train",  # a study_id that is no number
             "no-split,53189527,10000032,")  # no split


@pytest.fixture
def credentials(monkeypatch):
    for variable in CREDENTIALS:
        monkeypatch.setenv(variable, "attested-for-the-test")


def write_studies(folder: Path, suffixes: tuple[str, ...] = (".jpg",)) -> Path:
    """The studies of STUDIES as published (``files/pXX/pSUBJECT/sSTUDY.txt`` beside
    ``sSTUDY/<dicom_id>.jpg``), and the split table over them and the fixture's studies, with the
    malformed rows and a test row for one image of s54444444 at its end."""
    for n, study in enumerate(STUDIES):
        write_file(folder, f"files/{study}.txt", REPORT.format(n=n))
        for view in range(2):
            for suffix in suffixes:
                write_file(folder, f"files/{study}/{n:08x}-bde0afdd-112c0b34-7bc16630-{view:08x}{suffix}",
                           jpeg_bytes(seed=10 * n + view))
    names = {study.rsplit("/", 1)[1]: split for study, split in STUDIES.items()}
    return write_mimic_split(folder, names, extra_lines=(*MALFORMED, "conflict,54444444,11000036,test"))


def study_names(rows) -> set[str]:
    return {row["id"].rsplit("/", 1)[1] for row in rows}


def test_only_train_studies_are_kept_and_the_others_counted_as_filtered(tmp_path, monkeypatch):
    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("mimic_cxr")
    assert (folder / MIMIC_SPLIT_FILE).is_file()  # the fixture builder writes the table too
    write_studies(folder)
    report = curate("mimic_cxr")
    assert study_names(report["kept"]) == TRAIN | FIXTURE_STUDIES
    # validate, test, the study the table does not list, and the study one of whose images is in test
    assert report["filtered_by_reason"] == {"subset": 4}
    lines = len(FIXTURE_STUDIES) * 2 + 2 * (len(STUDIES) - 1) + 1  # header + fixture's rows + ours (s5333 unlisted)
    assert sorted(p for p in report["problems"] if p[1] == MIMIC_SPLIT_FILE) == [
        ("malformed_record", MIMIC_SPLIT_FILE, f"line {lines + 1}"),
        ("malformed_record", MIMIC_SPLIT_FILE, f"line {lines + 3}"),
        ("missing_field", MIMIC_SPLIT_FILE, f"line {lines + 2}"),
        ("missing_field", MIMIC_SPLIT_FILE, f"line {lines + 4}"),
    ]
    assert report["quarantined"] == len(MALFORMED)
    assert report["accounted"]
    assert report["rows_in"] == report["rows_kept"] + report["quarantined"] + report["filtered"]
    assert report["rows_kept"] == len(TRAIN | FIXTURE_STUDIES)


@pytest.mark.parametrize(("version", "suffix"), [("jpg-2.1.0", ".jpg"), ("dicom-2.1.0", ".dcm")])
def test_each_layout_version_reads_the_train_split_only(tmp_path, credentials, version, suffix):
    entry = REGISTRY.get("mimic_cxr")
    assert entry.adapters_for(version)[0].options["split_file"] == MIMIC_SPLIT_FILE
    folder = tmp_path / entry.origin.local_dir
    write_studies(folder, (suffix,))
    outcomes = list(iter_source_rows(entry, tmp_path, version))
    rows = [o for o in outcomes if type(o) is dict]
    assert study_names(rows) == TRAIN
    assert all(Path(image["path"]).suffix == suffix for row in rows for image in row["images"])
    filtered = {o.detail for o in outcomes if type(o) is RowFiltered}
    assert filtered == {f"study s51111111 is in the validate split of {MIMIC_SPLIT_FILE}",
                        f"study s52222222 is in the test split of {MIMIC_SPLIT_FILE}",
                        f"study s54444444 is in the test split of {MIMIC_SPLIT_FILE}",
                        f"study s53333333 is not listed in {MIMIC_SPLIT_FILE} (its split is unknown)"}
    problems = [o for o in outcomes if type(o) is RowQuarantined]
    assert {(p.reason, p.local_id) for p in problems} == {
        ("malformed_record", "bad-split"), ("missing_field", "no-study"), ("malformed_record", "not-a-number"),
        ("missing_field", "no-split")}
    assert "split 'trian' of study s50414267 is none of train, validate, test" in {p.detail for p in problems}


def test_the_training_studies_and_the_benchmark_s_test_studies_are_disjoint(tmp_path, credentials):
    """The benchmark's own release (its split file: four test studies, one train study) read by both."""
    entry = REGISTRY.get("mimic_cxr")
    folder = tmp_path / entry.origin.local_dir
    build_release("mimic_cxr", folder)
    trained = study_names(o for o in iter_source_rows(entry, tmp_path) if type(o) is dict)
    evaluated = study_names(load_benchmark("mimic_cxr", None, root=folder, partial=True))
    assert trained == {"s59999999"} and evaluated and not trained & evaluated


def test_a_missing_split_file_stops_the_source_naming_it_and_where_to_get_it(tmp_path, monkeypatch):
    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("mimic_cxr")
    (folder / MIMIC_SPLIT_FILE).unlink()
    with pytest.raises(SourceUnavailable, match=r"dataset 'mimic_cxr' .*the split table mimic-cxr-2\.0\.0-split\.csv"
                                                r"\.gz is missing .*physionet\.org/content/mimic-cxr-jpg/2\.1\.0"):
        curate("mimic_cxr")
    # the same table unzipped beside files/ is read
    write_mimic_split(folder, {"s50000001": "test"}, file="mimic-cxr-2.0.0-split.csv")
    assert study_names(curate("mimic_cxr")["kept"]) == FIXTURE_STUDIES - {"s50000001"}


@pytest.mark.parametrize(("table", "message"), [
    ("dicom_id,study_id,subject_id\nd1,50000000,10000032\n", r"has no column 'split'"),
    ("dicom_id,study_id,subject_id,split\n", r"lists no image"),
    ("", r"lists no image"),
])
def test_a_split_table_without_its_columns_or_rows_stops_the_source(tmp_path, credentials, table, message):
    entry = REGISTRY.get("mimic_cxr")
    folder = tmp_path / entry.origin.local_dir
    write_studies(folder)
    (folder / MIMIC_SPLIT_FILE).write_bytes(gzip.compress(table.encode()))
    with pytest.raises(SourceUnavailable, match=rf"dataset 'mimic_cxr' .*SourceLayoutError: {MIMIC_SPLIT_FILE} {message}"):
        list(iter_source_rows(entry, tmp_path))


def test_a_short_first_row_is_its_own_problem_not_a_missing_column(tmp_path, credentials):
    entry = REGISTRY.get("mimic_cxr")
    folder = tmp_path / entry.origin.local_dir
    write_studies(folder)
    (folder / MIMIC_SPLIT_FILE).write_bytes(gzip.compress(b"dicom_id,study_id,subject_id,split\r\n"
                                                          b"d1,50414267\r\nd2,50414267,10000032,train\r\n"))
    outcomes = list(iter_source_rows(entry, tmp_path))
    assert study_names(o for o in outcomes if type(o) is dict) == {"s50414267"}
    assert [(o.reason, o.record) for o in outcomes if type(o) is RowQuarantined] == [("missing_field", "line 2")]


def test_the_split_table_is_streamed_into_one_entry_per_study(tmp_path):
    """377,110 image rows of 227,827 studies: memory holds a study id and its split, never a row."""
    path = tmp_path / MIMIC_SPLIT_FILE
    lines = ["dicom_id,study_id,subject_id,split"]
    for study in range(2000):
        split = ("train", "validate", "test")[study % 3]
        lines += [f"d{study}-{view},{50000000 + study},{10000000 + study // 4},{split}" for view in range(3)]
    lines.insert(5, "")  # a blank line is no row, and counts as a line
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    numbered = report_adapter.numbered_split_table(path)
    assert next(numbered) == (2, {"dicom_id": "d0-0", "study_id": "50000000", "subject_id": "10000000",
                                  "split": "train"})
    assert [line for line, _ in numbered][2:5] == [5, 7, 8]  # line 6 is the blank one
    studies = split_studies(path, ["train"])
    assert len(studies) == 2000 and studies[50000003] == "train" and studies[50000004] == "validate"
    assert {id(split) for split in studies.values()} == {id(name) for name in report_adapter.SPLIT_NAMES}


def split_studies(path: Path, kept: list[str]) -> dict[int, str]:
    """The return value of ``report.split_studies`` (it yields quarantine records first)."""
    reader = report_adapter.split_studies(path, path.name, kept)
    while True:
        try:
            assert type(next(reader)) is RowQuarantined
        except StopIteration as done:
            return done.value


def test_a_study_put_in_train_and_in_a_held_out_split_is_held_out(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("dicom_id,study_id,subject_id,split\na,50000001,10000001,train\nb,50000001,10000001,test\n"
                    "c,50000002,10000002,validate\nd,50000002,10000002,train\ne,50000003,10000003,validate\n"
                    "f,50000003,10000003,test\n")
    assert split_studies(path, ["train"]) == {50000001: "test", 50000002: "validate", 50000003: "test"}
    both = split_studies(path, ["train", "validate"])  # s50000002 kept either way
    assert both[50000001] == both[50000003] == "test" and both[50000002] in ("train", "validate")


def test_the_benchmark_reads_the_split_table_with_the_shared_reader():
    """Moved down into the adapters (data/adapters never imports data/benchmarks); same bounds."""
    assert readers.split_table is report_adapter.split_table


def test_without_split_file_the_study_folders_layout_reads_every_study(tmp_path):
    """The option is the entry's: a study_folders layout that names no table (the benchmark's
    fallback for a copy of the test studies) reads them all, as before."""
    write_studies(tmp_path)
    options = {"layout": "study_folders", "image_dir": "files", "image_suffixes": [".jpg"]}
    rows = list(report_adapter.iter_samples(tmp_path, options))
    assert study_names(rows) == {study.rsplit("/", 1)[1] for study in STUDIES}
    with pytest.raises(SourceLayoutError, match="the split table elsewhere.csv.gz is missing"):
        list(report_adapter.iter_outcomes(tmp_path, {**options, "split_file": "elsewhere.csv.gz"}))

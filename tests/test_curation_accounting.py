"""Red-teaming curation's accounting: every input row ends kept, quarantined (one quarantine record
with its file and row) or filtered, counted by reason, whatever the batching, the parts, or a kill;
and the partition's ``rows_accounted`` check fails when the counts do not add up."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import png_bytes

import medmo_pipeline.data.curation.batch as batch_checks
from medmo_pipeline.data import shards
from medmo_pipeline.data.build import source_checks
from medmo_pipeline.data.curation import build_eval_index, curate
from medmo_pipeline.data.curation import parts as curation_parts
from medmo_pipeline.data.images import image_entry
from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined
from tests.conftest import ROOT

SOURCE = "s"
ROWS = 1100  # over two batches of 513: duplicates reach across batch and shard boundaries


def _png(seed: int) -> bytes:
    return png_bytes(16, 12, seed=seed)


EVAL_IMAGES = [_png(100_000 + m) for m in range(3)]
EVAL_QUESTIONS = [f"What is the eval question {m}?" for m in range(3)]


def eval_index() -> set[str]:
    rows = [{"task": "vqa", "images": [{"sha256": hashlib.sha256(data).hexdigest()}],
             "messages": [{"role": "user", "content": "Describe the image."}]} for data in EVAL_IMAGES]
    rows += [{"task": "text_qa", "images": [], "messages": [{"role": "user", "content": q}]} for q in EVAL_QUESTIONS]
    return build_eval_index(rows)


def sample(i: int, *, question: str | None = None, answer: str = "yes", image: int | None = None,
           data: bytes | None = None, task: str = "vqa", local_id: str | None = None) -> dict:
    images = [] if task == "text_qa" else [image_entry(data if data is not None else _png(i if image is None else image),
                                                       f"img{i}.png")]
    return {"id": local_id or f"r{i}", "split": "train", "task": task, "modality": "xray", "images": images,
            "messages": [{"role": "user", "content": question or f"Question {i}?"},
                         {"role": "assistant", "content": answer}],
            "answer": answer, "choices": [], "boxes": [], "license": "CC0", "origin": ("table.csv", f"row {i + 1}")}


def mixed_rows(count: int = ROWS) -> tuple[list, list]:
    """(inputs, expected outcome of each): a cycle of twelve kinds, some referring to rows one
    batch or more back; an outcome is "kept", ("q", reason) or ("f", reason, rows)."""
    items, expected = [], []
    for i in range(count):
        kind, lap = i % 12, i // 12
        if kind == 0:
            item, outcome = sample(i), "kept"
        elif kind == 1:  # non-ASCII (check_row decides), in NFD
            item, outcome = sample(i, question=unicodedata.normalize("NFD", f"Qué ve {i}?")), "kept"
        elif kind == 2:  # an id already kept (two rows back, or 518: one batch or more back)
            back = 518 if lap % 2 and i >= 518 else 2
            item, outcome = sample(i, local_id=f"r{i - back}", question=f"Other {i}?"), ("q", "duplicate_id")
        elif kind == 3:  # row i-3's content under another id: other case, other spacing
            item, outcome = sample(i, question=f"QUESTION  {i - 3}?", image=i - 3), ("f", "duplicate")
        elif kind == 4:  # row i-3's NFD question in NFC
            item, outcome = sample(i, question=unicodedata.normalize("NFC", f"Qué ve {i - 3}?"), image=i - 3), \
                ("f", "duplicate")
        elif kind == 5:  # the adapter could not make a row
            item, outcome = RowQuarantined("bad_number", "NaN", file="table.csv", record=f"row {i + 1}",
                                           local_id=f"r{i}"), ("q", "bad_number")
        elif kind == 6:  # left out by the adapter (a record of two rows now and then)
            rows = 2 if lap % 2 else 1
            item, outcome = RowFiltered("language", rows=rows), ("f", "language", rows)
        elif kind == 7:  # a row check
            item, outcome = sample(i, answer=""), ("q", "missing_answer")
        elif kind == 8:  # an image check
            data = _png(i)
            item, outcome = sample(i, data=data[: len(data) // 2]), ("q", "image_truncated")
        elif kind == 9:  # a batch text check, then check_row's reason
            item, outcome = sample(i, question=f"Bad\x07 {i}?"), ("q", "control_characters")
        elif kind == 10:  # an evaluation item: its image, or its question written otherwise
            if lap % 2:
                item = sample(i, task="text_qa", question=f"  what IS the eval  question {lap % 3} ", answer="a")
            else:
                item = sample(i, data=EVAL_IMAGES[lap % 3])
            outcome = ("f", "decontamination")
        else:  # row i-527's content (over a batch back) under another id
            item, outcome = (sample(i, question=f"Question {i - 527}?", image=i - 527), ("f", "duplicate")) \
                if i >= 527 else (sample(i), "kept")
        items.append(item)
        expected.append(outcome)
    return items, expected


def expected_counts(expected: list) -> tuple[dict, dict, list]:
    quarantined, filtered = {}, {}
    for outcome in expected:
        if outcome[0] == "q":
            quarantined[outcome[1]] = quarantined.get(outcome[1], 0) + 1
        elif outcome[0] == "f":
            filtered[outcome[1]] = filtered.get(outcome[1], 0) + (outcome[2] if len(outcome) > 2 else 1)
    kept = [f"{SOURCE}:r{i}" for i, outcome in enumerate(expected) if outcome == "kept"]
    return dict(sorted(quarantined.items())), dict(sorted(filtered.items())), kept


def quarantine_records(path) -> list[tuple]:
    return sorted((q["row_index"], q["reason"], q["file"], q["record"]) for q in pq.read_table(path).to_pylist())


@pytest.mark.parametrize("batch", [1, 2, 511, 512, 513])
def test_every_row_is_counted_once_and_the_first_occurrence_kept_whatever_the_batching(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(batch_checks, "FIRST_BATCH_ROWS", batch)
    monkeypatch.setattr(batch_checks, "BATCH_ROWS", batch)
    items, expected = mixed_rows()
    quarantined, filtered, kept = expected_counts(expected)
    report = curate(items, tmp_path / "out", source=SOURCE, eval_index=eval_index(), shard_rows=batch + 1)

    assert [row["id"] for row in shards.iter_rows(tmp_path / "out", columns=["id"])] == kept
    assert report["quarantined_by_reason"] == quarantined and report["filtered_by_reason"] == filtered
    assert report["rows_in"] == sum(o[2] if o[0] == "f" and len(o) > 2 else 1 for o in expected)
    assert report["rows_kept"] == len(kept) and report["accounted"]
    # one quarantine record per quarantined row, naming its input index, file and row
    assert quarantine_records(report["quarantine_path"]) == [
        (i, outcome[1], "table.csv", f"row {i + 1}") for i, outcome in enumerate(expected) if outcome[0] == "q"]
    assert source_checks(report, max_quarantine_rate=1.0)["rows_accounted"][0]


def test_near_duplicates_by_spacing_case_and_unicode_form_are_one_item(tmp_path):
    """Whitespace runs inside a text (CRLF line ends, a doubled or non-breaking space) made a copy
    of a row another item: it was kept twice."""
    question = "Is there a lésion?\nLeft or right?"
    variants = [question, question.replace("\n", "\r\n"), question.replace(" ", "  "),
                question.replace("a ", "a\u00a0"), unicodedata.normalize("NFD", question).upper(),
                "Is there a lesion?\nLeft or right?", "Is there a lesion?\r\n Left or  right?"]
    rows = [sample(i, question=text, image=0) for i, text in enumerate(variants)]
    report = curate(rows, tmp_path / "out", source=SOURCE, shard_rows=10)
    assert [row["id"] for row in shards.iter_rows(tmp_path / "out")] == [f"{SOURCE}:r0", f"{SOURCE}:r5"]
    assert report["filtered_by_reason"] == {"duplicate": 5}
    # words still differ: "a lesion" is not "alesion"
    other = curate([sample(0, question="a lesion", image=0), sample(1, question="alesion", image=0)],
                   tmp_path / "other", source=SOURCE, shard_rows=10)
    assert other["rows_kept"] == 2


def test_a_row_out_of_memory_in_check_row_is_quarantined_as_such(tmp_path, monkeypatch):
    """A MemoryError in check_row fell through: the first row of a batch raised (the source
    failed), a later one kept the row before it again, quarantined as duplicate_id."""
    real = batch_checks.check_row

    def check_row(raw, **options):
        if raw.get("id") == "big":
            raise MemoryError()
        return real(raw, **options)

    monkeypatch.setattr(batch_checks, "check_row", check_row)
    big = sample(9, question="Grande é?", local_id="big")  # non-ASCII: check_row decides it
    for rows, kept in (([big], []), ([sample(1, question="Qué?"), big, sample(3)], ["s:r1", "s:r3"])):
        out = tmp_path / f"out{len(rows)}"
        report = curate(rows, out, source=SOURCE, shard_rows=10)
        assert report["quarantined_by_reason"] == {"out_of_memory": 1} and report["accounted"]
        assert [row["id"] for row in shards.iter_rows(out)] == kept


def test_parts_merge_keeps_filtered_counts_and_where_quarantined_rows_came_from(tmp_path):
    """The merged report of a source curated in parts had no filtered counts (the partition's
    checks raised KeyError; the language filter's rows were unaccounted), and its quarantine table
    lost every record's file and row (a duplicate id across parts had row -1 and no file)."""
    items, expected = mixed_rows(240)
    _, filtered, _ = expected_counts(expected)
    parts, chunk, reports = 2, 50, []
    for part in range(parts):
        reports.append(curate(curation_parts.part_rows(items, part, parts, chunk), tmp_path / f"part-{part}",
                              source=SOURCE, eval_index=eval_index(), shard_rows=40,
                              quarantine_path=tmp_path / f"part-{part}.quarantine.parquet",
                              kept_origins=tmp_path / f"part-{part}.origins.arrow"))
    merged = curation_parts.merge_parts(reports, tmp_path / "merged", source=SOURCE, shard_rows=40, revision="r",
                                        parts=parts, chunk=chunk)
    assert merged["accounted"] and merged["filtered"] == sum(merged["filtered_by_reason"].values())
    assert merged["filtered_by_reason"]["language"] == filtered["language"]
    assert merged["rows_in"] == merged["rows_kept"] + merged["quarantined"] + merged["filtered"]
    assert source_checks(merged, max_quarantine_rate=1.0)["rows_accounted"][0]
    records = quarantine_records(merged["quarantine_path"])
    assert records == [(i, o[1], "table.csv", f"row {i + 1}") for i, o in enumerate(expected) if o[0] == "q"]


def _tampered(report: dict, change) -> dict:
    copy = {**report, "quarantined_by_reason": dict(report["quarantined_by_reason"]),
            "filtered_by_reason": dict(report["filtered_by_reason"])}
    change(copy)
    return copy


def test_the_rows_accounted_check_fails_when_a_count_is_tampered_with(tmp_path):
    items, _ = mixed_rows(60)
    report = curate(items, tmp_path / "out", source=SOURCE, eval_index=eval_index(), shard_rows=20)
    def check(tampered: dict) -> tuple[bool, str]:
        return source_checks(tampered, max_quarantine_rate=1.0)["rows_accounted"]
    assert check(report)[0], check(report)[1]

    def moved(r):  # one row's reason changed: the totals still add up
        r["quarantined_by_reason"]["bad_number"] -= 1
        r["quarantined_by_reason"]["missing_answer"] += 1

    def one_more_language(r):
        r["filtered_by_reason"]["language"] += 1

    def one_more_kept(r):
        r["rows_kept"] += 1
        r["rows_in"] += 1

    for change in (moved, one_more_language, one_more_kept, lambda r: r.update(filtered=r["filtered"] - 1)):
        passed, note = check(_tampered(report, change))
        assert not passed, (change, note)
    # a quarantine table that lost a record
    table = pq.read_table(report["quarantine_path"])
    pq.write_table(table.slice(1), report["quarantine_path"])
    passed, note = check(report)
    assert not passed and "the quarantine table holds" in note


def test_a_source_of_no_row_kept_is_published_empty_with_its_counts_and_fails_rows_kept(tmp_path):
    rows = [RowFiltered("language"), RowQuarantined("bad_number", "NaN", file="t.csv", record="row 2"),
            sample(3, answer=""), RowFiltered("subset", rows=3)]
    report = curate(rows, tmp_path / "out", source=SOURCE, shard_rows=10)
    assert report["manifest"]["total_rows"] == 0 and shards.verify_shards(tmp_path / "out") == []
    checks = source_checks(report, max_quarantine_rate=1.0)
    assert checks["rows_accounted"] == (True, "6 in = 0 kept + 2 quarantined + 4 filtered {'language': 1, 'subset': 3}")
    passed, note = checks["rows_kept"]
    assert not passed and note.startswith("0 of 6 rows kept: every row was quarantined "
                                          "{'bad_number': 1, 'missing_answer': 1} or filtered")


CHILD = """
import sys, time
sys.path.insert(0, "tests")
from pathlib import Path
from medmo_pipeline.data.curation import curate
from tests.test_curation_accounting import SOURCE, eval_index, mixed_rows

def slow():
    for item in mixed_rows(int(sys.argv[2]))[0]:
        time.sleep(0.002)
        yield item

curate(slow(), Path(sys.argv[1]), source=SOURCE, eval_index=eval_index(), shard_rows=int(sys.argv[3]))
"""


def test_a_kill_at_a_random_point_then_a_rerun_gives_the_uninterrupted_result(tmp_path):
    rows, shard_rows = 600, 40
    items, _ = mixed_rows(rows)
    reference = curate(items, tmp_path / "reference", source=SOURCE, eval_index=eval_index(), shard_rows=shard_rows)
    shard_count = len(reference["manifest"]["shards"])
    rng = random.Random(20261207)
    for trial in range(2):
        out = tmp_path / f"trial-{trial}"
        wanted, extra = rng.randint(1, shard_count - 2), rng.uniform(0, 0.05)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(rows), str(shard_rows)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while len(list(out.glob("part-*.parquet"))) < wanted:
                assert child.poll() is None, child.stdout.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.005)
            time.sleep(extra)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert not (out / shards.MANIFEST_NAME).exists() and not (tmp_path / f"{out.name}.quarantine.parquet").exists()

        again = curate(items, out, source=SOURCE, eval_index=eval_index(), shard_rows=shard_rows)

        assert (out / shards.MANIFEST_NAME).read_bytes() == (tmp_path / "reference" / shards.MANIFEST_NAME).read_bytes()
        assert Path(again["quarantine_path"]).read_bytes() == Path(reference["quarantine_path"]).read_bytes()
        for key in ("rows_in", "rows_kept", "quarantined_by_reason", "filtered_by_reason", "data_version"):
            assert again[key] == reference[key], key
        assert shards.verify_shards(out) == [] and not list(tmp_path.glob(".*"))


def test_quarantine_table_schema_has_file_and_record():
    from medmo_pipeline.data.curation import QuarantineWriter

    assert {"row_index", "file", "record"} <= set(QuarantineWriter.SCHEMA.names)
    assert QuarantineWriter.SCHEMA.field("row_index").type == pa.int64()


def _corpus(**fields):
    import copy

    from medmo_pipeline.config import CorpusRecipe
    from tests.conftest import small_recipe_data

    data = copy.deepcopy(small_recipe_data()["corpus"])
    data["synthetic"]["train_rows"] = {"synth_xray": 30}
    data["synthetic"]["eval_rows"] = {"synth_xray": 6}
    data["shard_rows"] = 10
    return CorpusRecipe.model_validate({**data, **fields})


def _with_extra_rows(monkeypatch, extra: list) -> None:
    """The synthetic source's rows, then ``extra`` (an exception among them is raised there)."""
    from medmo_pipeline.data import sources

    real = sources.source_rows

    def source_rows(corpus, source, *, seed):
        yield from real(corpus, source, seed=seed)
        for item in extra:
            if isinstance(item, Exception):
                raise item
            yield item

    monkeypatch.setattr(sources, "source_rows", source_rows)


def test_a_source_curated_in_parts_reports_every_count_the_partition_checks_need(tmp_path, monkeypatch):
    from medmo_pipeline.data.build import source_metadata
    from medmo_pipeline.data.sources import curate_source

    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    report = curate_source(_corpus(curation_parts=2, split_above_bytes=1000), "synth_xray", tmp_path / "corpus",
                           seed=3, log=lambda _: None)
    assert report["parts"] == 2 and report["accounted"]
    checks = source_checks(report, max_quarantine_rate=0.05)
    assert all(passed for passed, _ in checks.values()), checks
    metadata = source_metadata(report, "code", 0.0)
    assert metadata["rows_in"] == metadata["rows"] + metadata["quarantined"] + metadata["filtered"]


def test_a_source_failing_part_way_leaves_nothing_behind(tmp_path, monkeypatch):
    from medmo_pipeline.data.sources import curate_source

    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    _with_extra_rows(monkeypatch, [RowFiltered("language"), OSError("the disk went away")])
    with pytest.raises(OSError, match="the disk went away"):
        curate_source(_corpus(), "synth_xray", tmp_path / "corpus", seed=3, log=lambda _: None)
    assert not (tmp_path / "corpus" / "synth_xray").exists()

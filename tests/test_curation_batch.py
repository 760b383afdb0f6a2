"""The batch checks (``check_batch``) decide exactly as ``check_row`` does, row by row: the same rows
kept, normalised the same, the same reasons and details for the rest, and byte-identical shards and
quarantine when a whole source is curated either way."""

from __future__ import annotations

import copy
import functools
import io
import math

import pyarrow as pa
import pytest
from fixtures_formats import jpeg_bytes, png_bytes
from PIL import Image
from test_curation import bomb_png, box, corrupted_rows, row

from medmo_pipeline.data import shards
from medmo_pipeline.data.curation import CurationLimits, ImageChecker, curate, keys, rules
from medmo_pipeline.data.curation import batch as batch_checks
from medmo_pipeline.data.curation.batch import check_batch
from medmo_pipeline.data.images import image_entry
from medmo_pipeline.data.synthetic import generate_rows
from medmo_pipeline.schema.rows import SAMPLE_SCHEMA


def synthetic() -> list[dict]:
    return [*generate_rows("synth_xray", "train", 24, image_size=48),
            *generate_rows("synth_cells", "eval", 12, image_size=48),
            *generate_rows("synth_medqa", "train", 16)]


def variants() -> list[dict]:
    """Good rows bent every way the batch path must notice (or leave to check_row)."""
    base = synthetic()
    vqa = next(r for r in base if r["task"] == "vqa")
    grounding = next(r for r in base if r["task"] == "grounding")
    mcq = next(r for r in base if r["choices"])
    out = []

    def bent(template: dict, **changes) -> dict:
        bent_row = copy.deepcopy(template)
        bent_row.update(changes)
        bent_row["id"] = f"{template['id']}-v{len(out)}"
        out.append(bent_row)
        return bent_row

    def turns(question, reply, *more):
        return [{"role": "user", "content": question}, *more, {"role": "assistant", "content": reply}]

    # text: spacing, Unicode, bytes, missing values
    bent(vqa, answer="  yes \t", messages=turns(" Is there a lesion?\n", "\x1cyes\x1f"))
    bent(vqa, messages=turns("Is there a le\u0301sion?", "yes"))  # NFC composes it: check_row's job
    bent(vqa, modality="x\u00e9ray", license="CC-BY \u00a9")
    bent(vqa, messages=turns(b"Is there a lesion?", "yes"), answer=b"yes")
    bent(vqa, messages=turns(memoryview(b"Is it?"), "yes"))
    bent(vqa, messages=turns(b"Is \xff it?", "yes"))
    bent(vqa, messages=turns("Is \udcff it?", "yes"))
    bent(vqa, modality=None, license=None, split=None)
    bent(vqa, split="")
    bent(vqa, split=" eval ")
    bent(vqa, split="  ")
    bent(vqa, task=" vqa ")
    bent(vqa, task="VQA")
    bent(vqa, answer=None)
    bent(next(r for r in base if r["task"] == "caption"), answer=None)
    bent(vqa, modality="   ")
    bent(vqa, id=f"synth_xray:{vqa['id']}")
    bent(vqa, id="   ")
    # turns
    bent(vqa, messages=turns("Is it?", "yes", {"role": "assistant", "content": "maybe"}, {"role": None, "content": None}))
    bent(vqa, messages=turns("Is it?", "yes", {"role": "assistant", "content": "maybe"}, {"role": "user", "content": "?"}))
    bent(vqa, messages=[{"role": "system", "content": "Be brief."}, *turns("Is it?", "yes")])
    bent(vqa, messages=turns("", "yes"))
    bent(vqa, messages=turns("Is it?", "   "))
    bent(vqa, messages=[{"role": "User", "content": "Is it?"}, {"role": "assistant", "content": "yes"}])
    bent(vqa, messages=[{"role": "user", "content": "Is it?"}])
    bent(vqa, messages=[])
    bent(vqa, messages=tuple(turns("Is it?", "yes")))
    bent(vqa, messages=[("user", "Is it?"), ("assistant", "yes")])
    bent(vqa, messages=[{"role": "user"}, {"role": "assistant", "content": "yes"}])
    # choices
    bent(mcq, choices=[" A drug ", "b drug", "C DRUG"], answer="b", messages=turns("Pick", "b"))
    bent(mcq, choices=["x", "X"], answer="x", messages=turns("Pick", "x"))
    bent(mcq, choices=["x", "y"], answer="C", messages=turns("Pick", "C"))
    bent(mcq, choices=["x", "y"], answer="Y", messages=turns("Pick", "Y"))
    bent(mcq, choices=["x", "y"], answer="", messages=turns("Pick", "x"))
    bent(mcq, choices=["x\x1fy", "z"], answer="z", messages=turns("Pick", "z"))
    bent(mcq, choices=["x", "y"], answer="x\x1ey", messages=turns("Pick", "x"))
    bent(mcq, choices=["stra\u00dfe", "b"], answer="STRASSE", messages=turns("Pick", "b"))
    bent(mcq, choices=None)
    bent(mcq, choices=("x", "y"), answer="x")
    bent(mcq, choices=["x", None], answer="x")
    # images
    entry = vqa["images"][0]
    bent(vqa, images=[{**entry, "path": entry["path"].upper()}])
    bent(vqa, images=[{**entry, "path": "scan.jpg"}])
    bent(vqa, images=[{**entry, "path": None}])
    bent(vqa, images=[{**entry, "path": "sc\u00e4n.png"}])
    bent(vqa, images=[{**entry, "width": 0, "height": None}])
    bent(vqa, images=[{**entry, "width": float(entry["width"])}])
    bent(vqa, images=[{**entry, "width": str(entry["width"])}])
    bent(vqa, images=[{**entry, "width": entry["width"] + 1}])
    bent(vqa, images=[{**entry, "bytes": bytearray(entry["bytes"])}])
    bent(vqa, images=[{**entry, "bytes": None}])
    bent(vqa, images=[{**entry, "bytes": entry["bytes"][:-5]}])
    bent(vqa, images=[{**entry, "sha256": "0" * 64}])
    bent(vqa, images=[image_entry(jpeg_bytes(), "x.jpg")])
    bent(vqa, images=[image_entry(jpeg_bytes(), "x.png")])
    bent(vqa, images=[image_entry(bomb_png(), "x.png")])
    bent(vqa, images=[image_entry(png_bytes(4, 4), "x.png")])
    bent(vqa, images=[image_entry(png_bytes(400, 4), "x.png")])
    bent(vqa, images=[entry, image_entry(png_bytes(20, 30, seed=3), "two.png")])
    bent(vqa, images=(entry,))
    bent(vqa, images=[])
    bent(vqa, images=None)
    bent(vqa, images=[(entry["bytes"], entry["path"])])
    # boxes
    bent(grounding, boxes=[box(-10, -10, 20, 20)])
    bent(grounding, boxes=[box(40, 40, 400, 400)])
    bent(grounding, boxes=[box(math.inf, 0, 1, 1)])
    bent(grounding, boxes=[box(5, 5, 5, 9)])
    bent(grounding, boxes=[box("a", 0, 1, 1)])
    bent(grounding, boxes=[{"x1": 1, "y1": 1, "x2": 3, "y2": 3}])
    bent(grounding, boxes=[box(1, 1, 3, 3, label=b"l\xffesion")])
    bent(grounding, boxes=[box(1, 1, 3, 3, label="  l\u00e9sion ")])
    bent(grounding, boxes=tuple(grounding["boxes"]))
    bent(grounding, boxes=[box(1, 1, 3, 3)], images=[])
    bent(grounding, boxes=[("lesion", 1, 1, 3, 3)])
    return out


def everything() -> list:
    corrupted, _, _ = corrupted_rows()
    rows = [*synthetic(), *corrupted, *variants(), "not a row", None, {"id": "only an id"}]
    rows += [copy.deepcopy(rows[0]), dict(copy.deepcopy(rows[3]), id="another id")]  # a duplicate id and content
    return rows


def outcome(checked: batch_checks.CheckedBatch, index: int):
    result = checked.outcomes[index]
    if isinstance(result, rules.Rejected):
        return result.reason, result.detail
    return checked.table.slice(result, 1).to_pylist()[0], checked.clipped[result]


@pytest.mark.parametrize("limits", [CurationLimits(), CurationLimits(check_extension=False)], ids=["default", "no-ext"])
def test_batch_and_row_by_row_checks_agree_on_every_row(limits):
    rows = everything()
    fast = check_batch(rows, source="synth_xray", images=ImageChecker(limits.image), limits=limits)
    slow = check_batch(rows, source="synth_xray", images=ImageChecker(limits.image), limits=limits, vectorised=False)
    for index, raw in enumerate(rows):
        assert outcome(fast, index) == outcome(slow, index), (index, raw if not isinstance(raw, dict) else raw.get("id"))
    assert fast.table.equals(slow.table)
    kept = sum(not isinstance(o, rules.Rejected) for o in fast.outcomes)
    assert 0 < kept < len(rows) and fast.table.num_rows == kept


@pytest.mark.parametrize("limits", [CurationLimits(), CurationLimits(check_extension=False)], ids=["default", "no-ext"])
def test_each_bent_row_gets_the_outcome_of_check_row(limits, monkeypatch):
    """One bent row per batch (beside good ones), so that a value Arrow cannot convert spoils only
    its own batch and every other row is decided by the batch checks."""
    good, reference = synthetic()[:3], rules.check_row
    slow = []
    monkeypatch.setattr(batch_checks, "check_row", lambda raw, **kwargs: slow.append(raw) or reference(raw, **kwargs))
    decided_in_batch = 0
    for bent_row in variants():
        rows = [*good, bent_row]
        slow.clear()
        fast = check_batch(rows, source="synth_xray", images=ImageChecker(limits.image), limits=limits)
        decided_in_batch += not any(raw is bent_row for raw in slow)
        one_by_one = check_batch(rows, source="synth_xray", images=ImageChecker(limits.image), limits=limits,
                                 vectorised=False)
        assert [outcome(fast, i) for i in range(4)] == [outcome(one_by_one, i) for i in range(4)], bent_row["id"]
    assert decided_in_batch >= 20  # the batch checks really decided many of them


def test_most_good_rows_take_the_batch_path(monkeypatch):
    """Guard against a batch path that silently sends everything to check_row."""
    calls = []
    monkeypatch.setattr(batch_checks, "check_row", lambda raw, **kwargs: calls.append(raw) or (_ for _ in ()).throw(
        AssertionError("check_row called")))
    rows = synthetic()
    checked = check_batch(rows, source="synth_xray", images=ImageChecker(CurationLimits().image),
                          limits=CurationLimits())
    assert calls == [] and checked.table.num_rows == len(rows)


def test_the_usual_batch_is_found_plain_as_row_by_row():
    rows = synthetic()
    assert batch_checks._all_plain(rows) == batch_checks._plain_rows_one_by_one(rows)
    for bent_row in variants():  # one row that is not plain (or lacks a path): the loop decides
        batch = [*rows[:3], bent_row]
        usual = batch_checks._all_plain(batch)
        assert usual is None or usual == batch_checks._plain_rows_one_by_one(batch), bent_row["id"]


def test_keys_are_64_bit_and_tell_texts_apart():
    texts = ["a", "synth_xray:train-000001", "synth_xray:train-000002", "l\u00e9sion", "le\u0301sion", "",
             "\ud800 a lone surrogate"]
    found = keys.keys64(texts)
    assert all(type(key) is int and -2**63 <= key < 2**63 for key in found)
    assert len(set(found)) == len(texts)
    assert keys.keys64([text.encode().decode() for text in texts[:-1]]) == found[:-1]  # equal texts, equal keys


def test_a_row_arrow_cannot_convert_sends_only_its_batch_to_check_row():
    rows = synthetic()[:6]
    rows[2] = dict(rows[2], answer=12345)  # an int where text goes: malformed, as check_row says
    checked = check_batch(rows, source="synth_xray", images=ImageChecker(CurationLimits().image),
                          limits=CurationLimits())
    assert checked.outcomes[2].reason == "malformed_row" and checked.table.num_rows == 5


@pytest.mark.parametrize("batch_rows", [1, 7, 64])
def test_curating_in_batches_gives_the_bytes_of_row_by_row_checks(tmp_path, monkeypatch, batch_rows):
    rows = everything() * 2  # the second copy: duplicate ids and contents across batches
    monkeypatch.setattr(batch_checks, "BATCH_ROWS", batch_rows)
    batched = curate(rows, tmp_path / "batched", source="synth_xray", shard_rows=50)
    monkeypatch.setattr(batch_checks, "check_batch", functools.partial(check_batch, vectorised=False))
    one_by_one = curate(rows, tmp_path / "one_by_one", source="synth_xray", shard_rows=50)
    assert batched["manifest"] == one_by_one["manifest"] and batched["data_version"] == one_by_one["data_version"]
    assert {k: v for k, v in batched.items() if "path" not in k and k != "shard_dir"} == \
        {k: v for k, v in one_by_one.items() if "path" not in k and k != "shard_dir"}
    assert (tmp_path / "batched.quarantine.parquet").read_bytes() == \
        (tmp_path / "one_by_one.quarantine.parquet").read_bytes()
    assert shards.verify_shards(tmp_path / "batched") == []
    assert batched["quarantined"] > 50 and batched["duplicates_dropped"] > 0 and batched["boxes_clipped"] > 0


def test_batch_size_does_not_change_the_output(tmp_path, monkeypatch):
    rows = everything()
    first = curate(rows, tmp_path / "a", source="synth_xray", shard_rows=4)
    monkeypatch.setattr(batch_checks, "BATCH_ROWS", 3)
    second = curate(rows, tmp_path / "b", source="synth_xray", shard_rows=4)
    assert first["manifest"] == second["manifest"]
    assert (tmp_path / "a.quarantine.parquet").read_bytes() == (tmp_path / "b.quarantine.parquet").read_bytes()


def test_batches_end_where_shards_end_so_shards_are_not_copied_into_one_piece(tmp_path, monkeypatch):
    """After the small first batch, the next one fills the shard up; a shard that is one batch's
    rows is written as it is (a shard cut from two batches is first copied into one piece)."""
    rows = [row(f"r{index}", question=f"Is there a lesion in region {index}?") for index in range(130)]
    sizes, gathered = [], batch_checks.gathered
    monkeypatch.setattr(batch_checks, "gathered", lambda batch, **kwargs: sizes.append(len(batch)) or
                        gathered(batch, **kwargs))
    monkeypatch.setattr(batch_checks, "FIRST_BATCH_ROWS", 8)
    report = curate(rows, tmp_path / "out", source="synth_xray", shard_rows=50)
    assert sizes == [8, 42, 50, 30] and report["rows_kept"] == 130
    assert batch_checks.up_to_shard_end(50, 7) == 50  # a short way to go: not worth a small batch


def test_png_helper_images_are_what_they_claim():
    assert Image.open(io.BytesIO(png_bytes(400, 4))).size == (400, 4)
    assert row("x")["images"][0]["width"] == 64


def test_extension_mismatches_counts_what_each_name_promises_against_the_content():
    """The usual PNG named .png is settled over the whole column; every other pair by its name."""
    png, jpeg = png_bytes(), jpeg_bytes()
    named = [(png, "a.png"), (png, "b.PNG"), (png, "c.jpg"), (png, ""), (png, "d.dcm"), (jpeg, "e.png"),
             (jpeg, "f.jpeg"), (jpeg, "g"), (png, "h.png"), (b"GIF89a" + bytes(8), "i.tif")]
    template = synthetic()[0]
    table = pa.Table.from_pylist([{**template, "images": [
        {"bytes": data, "path": path, "width": 1, "height": 1, "sha256": ""} for data, path in named]}],
        schema=SAMPLE_SCHEMA)
    assert batch_checks.extension_mismatches(table) == 3  # c.jpg (PNG), e.png (JPEG), i.tif (GIF)
    assert batch_checks.extension_mismatches(table.slice(0, 0)) == 0


def test_control_codes_at_a_texts_edge_are_quarantined_and_invisible_answers_are_missing():
    """``str.strip`` takes VT, FF, FS-US and NEL as whitespace: "yes\\x1f" was kept as "yes" where
    "ye\\x1fs" was quarantined. An answer of a soft hyphen, a bidi override or a Hangul filler alone
    says nothing; padding of alternating spaces and zero-width spaces is stripped in one pass."""
    limits = CurationLimits()
    rows = [row(f"r{i}", answer=answer) for i, answer in enumerate(
        ["yes\x1f", "\x1cyes", "yes\x0b", "\x0cyes", "yes\x85", "yes\ufffe", "\u00ad", "\u202e", "\u3164 ",
         " \u200b" * 100_000 + "yes", "yes \t"])]
    fast = check_batch(rows, source="s", images=ImageChecker(limits.image), limits=limits)
    slow = check_batch(rows, source="s", images=ImageChecker(limits.image), limits=limits, vectorised=False)
    assert [outcome(fast, i) for i in range(len(rows))] == [outcome(slow, i) for i in range(len(rows))]
    reasons = [o.reason if isinstance(o, rules.Rejected) else "kept" for o in fast.outcomes]
    assert reasons == ["control_characters"] * 6 + ["missing_answer"] * 3 + ["kept"] * 2
    assert fast.table.column("answer").to_pylist() == ["yes", "yes"]


def test_duplicates_and_evaluation_items_are_matched_through_invisible_characters_and_options_count(tmp_path):
    """A soft hyphen or zero-width space inside a word hid a duplicate, and made an evaluation
    question miss its training copy; one question and answer over other options is another item."""
    question = "Is the tumour malignant?"
    rows = [row("a", question=question, images=[]) | {"task": "text_qa"},
            row("b", question="Is the tumour ma\u00adlignant?", images=[]) | {"task": "text_qa"},
            row("c", question="Which is true?", answer="A", choices=["Cyst", "Mass"], images=[]) | {"task": "text_qa"},
            row("d", question="Which is true?", answer="A", choices=["Edema", "Effusion"], images=[]) | {"task": "text_qa"}]
    report = curate(rows, tmp_path / "out", source="s", shard_rows=10)
    kept = {r["id"] for r in shards.iter_rows(tmp_path / "out")}
    assert kept == {"s:a", "s:c", "s:d"} and report["filtered_by_reason"] == {"duplicate": 1}
    index = keys.build_eval_index([row("e", question="Is the tumour ma\u200blignant?", images=[]) | {"task": "text_qa"}])
    contaminated = curate(rows[:1], tmp_path / "decontaminated", source="s", shard_rows=10, eval_index=index)
    assert contaminated["contaminated_by_kind"] == {"question": 1}


def test_paths_with_control_codes_and_values_of_no_plain_type_get_check_rows_outcome_in_a_batch():
    """An ASCII image path holding a control code was kept by the batch path (check_row quarantines
    it); a numpy array or pandas' NA where a list or a size belongs (``DataFrame.to_dict`` gives
    them) raised out of the batch path and cost the source, where check_row quarantines that row."""
    import numpy as np
    import pandas as pd

    limits = CurationLimits()
    good = row("good")
    bent = [copy.deepcopy(good) for _ in range(6)]
    bent[0]["images"][0]["path"] = "a\x07.png"
    bent[1]["images"][0]["path"] = "a\x1b[0m.png"
    bent[2]["images"] = np.array([good["images"][0], good["images"][0]], dtype=object)
    bent[3]["boxes"] = np.array([box(1, 1, 5, 5), box(2, 2, 6, 6)], dtype=object)
    bent[4]["images"][0]["width"] = pd.NA
    bent[5]["images"][0]["height"] = np.array([32, 32])
    for one in bent:
        rows = [one | {"id": "bent"}, good]
        fast = check_batch(rows, source="s", images=ImageChecker(limits.image), limits=limits)
        slow = check_batch(rows, source="s", images=ImageChecker(limits.image), limits=limits, vectorised=False)
        assert [outcome(fast, i) for i in range(2)] == [outcome(slow, i) for i in range(2)]
        assert isinstance(fast.outcomes[0], rules.Rejected) and not isinstance(fast.outcomes[1], rules.Rejected)


def test_the_key_set_answers_as_a_python_set_does():
    """``KeySet`` (sorted numpy runs, 8 bytes a key) against a CPython set, over random batches
    drawn from a small universe (so that keys repeat within a batch, across batches and against
    what is kept), the int64 extremes included: the same membership, the same size, runs sorted
    and disjoint, whatever the merges."""
    import random

    import numpy as np

    draw = random.Random(7)
    for _ in range(200):
        universe = [draw.randrange(-2**63, 2**63) for _ in range(draw.randrange(1, 60))] + [0, -1, 2**63 - 1, -2**63]
        kept, reference = keys.KeySet(), set()
        for _ in range(draw.randrange(1, 40)):
            probe = [draw.choice(universe) for _ in range(draw.randrange(0, 20))]
            assert kept.contains(probe).tolist() == [key in reference for key in probe]
            batch = [draw.choice(universe) for _ in range(draw.randrange(0, 20))]
            kept.add(batch)
            reference.update(batch)
            assert len(kept) == len(reference)
            assert all((run[1:] > run[:-1]).all() for run in kept.runs)
            assert len(np.unique(np.concatenate(kept.runs))) == len(reference) if kept.runs else not reference


def test_duplicates_are_found_across_batches_and_within_one_as_before(tmp_path):
    """Exact duplicates and repeated ids, within one batch and across batches (the key sets are
    looked up a batch at once): each kept once, the others counted or quarantined."""
    rows = list(generate_rows("synth_xray", "train", 300, seed=3, image_size=32))
    twins = [copy.deepcopy(rows[i]) for i in (5, 120, 299)]  # the content of kept rows, under new ids
    for number, twin in enumerate(twins):
        twin["id"] = f"synth_xray:twin-{number}"
    reused = copy.deepcopy(rows[7])
    reused["messages"][0]["content"] += " (another question)"  # the same id, other content
    report = curate([*rows[:150], twins[0], *rows[150:], *twins[1:], reused, twins[0]], tmp_path / "out",
                    source="synth_xray", shard_rows=64)
    # twin 0's second copy is a duplicate of content too: its first copy was dropped, so its id was not kept
    assert report["rows_kept"] == 300 and report["duplicates_dropped"] == 4
    assert report["quarantined_by_reason"] == {"duplicate_id": 1} and report["accounted"]

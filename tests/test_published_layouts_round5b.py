"""Round 5b of reading releases exactly as their publishers ship them: the text sets of the hub as
``huggingface-cli download`` gives them today (the sibling configs, splits and languages beside the
file the entry reads, the client's own ``.cache/huggingface`` folder) and the Cell Tracking
Challenge's training zips unzipped as they are. Each test writes a small copy of the layout in
tmp_path and curates it through its registry entry."""
# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import png_bytes, write_file
from PIL import Image
from test_published_layouts import accounted, curate, dataset, kept_rows, quarantine  # noqa: F401 - curate: the fixture

from medmo_pipeline.data.registry import SourceUnavailable


def _tif(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="TIFF")
    return buffer.getvalue()


def _hf_cache(root, *files: str) -> None:
    """What ``huggingface-cli download --local-dir`` leaves beside the files: never a record."""
    write_file(root, ".cache/huggingface/.gitignore", "*\n")
    for file in files:
        write_file(root, f".cache/huggingface/download/{file}.metadata", "0123abcd\nsha\n1700000000.0\n")


# ---- Cell Tracking Challenge: the training zips unzipped where they lie ---------------------------
# data.celltrackingchallenge.net/training-datasets/<name>.zip holds <name>/01/ and <name>/02/ (frames
# tNNN.tif, or tNNNN.tif for long sequences; 8- or 16-bit), <name>/NN_GT/SEG/man_segNNN.tif (gold
# instance ids, 16-bit, some frames only), <name>/NN_GT/TRA/man_trackNNN.tif (tracking markers) and,
# for some sets, <name>/NN_ST/SEG/ (silver truth). The entry read only a hand-renamed copy
# (images/tNNN.tif + masks/tNNN.tif): the release itself stopped the source ("images is missing"),
# and renaming the two sequences of a set (both start at t000.tif) into one folder overwrote one.

def _ctc_mask(size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint16)
    mask[2:6, 3:9], mask[20:30, 10:12] = 1, 300  # ids past 255, as 16-bit man_seg files hold them
    return mask


def _ctc_release(root) -> None:
    rng = np.random.default_rng(0)
    hela = "Fluo-N2DL-HeLa"  # 16-bit frames of a narrow range, two sequences both starting at t000
    for sequence in ("01", "02"):
        for frame in ("t000", "t001"):
            write_file(root, f"{hela}/{sequence}/{frame}.tif", _tif(rng.integers(32000, 34000, (32, 32)).astype(np.uint16)))
        write_file(root, f"{hela}/{sequence}_GT/SEG/man_seg000.tif", _tif(_ctc_mask()))  # t001: no gold SEG
        write_file(root, f"{hela}/{sequence}_GT/TRA/man_track000.tif", _tif(_ctc_mask()))  # markers: not read
    write_file(root, f"{hela}/01_ST/SEG/man_seg001.tif", _tif(_ctc_mask()))  # silver truth: not read
    hsc = "BF-C2DL-HSC"  # 8-bit frames numbered with four digits
    write_file(root, f"{hsc}/01/t0000.tif", _tif(rng.integers(0, 255, (32, 32)).astype(np.uint8)))
    write_file(root, f"{hsc}/01_GT/SEG/man_seg0000.tif", _tif(_ctc_mask()))
    write_file(root, f"{hsc}/01/t0001.tif", _tif(rng.integers(0, 255, (32, 32)).astype(np.uint8)))
    write_file(root, f"{hsc}/01_GT/SEG/man_seg0001.tif", _tif(_ctc_mask(16)))  # not its frame's size


def test_cell_tracking_challenge_zips_are_read_as_unzipped(tmp_path, curate):
    root = dataset(tmp_path, "ctc")
    _ctc_release(root)
    report = curate("ctc")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert sorted(rows) == ["ctc:BF-C2DL-HSC/01/t0000:cell", "ctc:Fluo-N2DL-HeLa/01/t000:cell",
                            "ctc:Fluo-N2DL-HeLa/02/t000:cell"]  # the two sequences' t000 are two rows
    for row in rows.values():
        assert sorted((b["x1"], b["y1"], b["x2"], b["y2"]) for b in row["boxes"]) == [(3, 2, 9, 6), (10, 20, 12, 30)]
    frame = Image.open(io.BytesIO(rows["ctc:Fluo-N2DL-HeLa/02/t000:cell"]["images"][0]["bytes"]))
    assert frame.mode == "I;16" and frame.size == (32, 32)  # kept as shipped; the model's decoding windows it
    assert report["filtered_by_reason"] == {"unannotated": 2}  # HeLa 01/t001 and 02/t001 (silver truth unread)
    assert [(q["reason"], q["file"], q["record"]) for q in quarantine(report)] == [
        ("image_size_mismatch", ".", "BF-C2DL-HSC/01/t0001.tif")]
    assert "BF-C2DL-HSC/01_GT/SEG/man_seg0001.tif is 16 x 16" in quarantine(report)[0]["detail"]
    assert accounted(report)


def test_cell_tracking_challenge_renamed_copy_is_still_read_as_a_version(tmp_path, curate):
    root = dataset(tmp_path, "ctc")
    for frame in ("t000", "t001"):
        write_file(root, f"images/{frame}.tif", _tif(np.full((32, 32), 9, np.uint8)))
    write_file(root, "masks/t000.tif", _tif(_ctc_mask()))
    report = curate("ctc", "renamed")
    assert [row["id"] for row in kept_rows(report)] == ["ctc:t000:cell"]
    assert report["filtered_by_reason"] == {"unannotated": 1} and accounted(report)
    with pytest.raises(SourceUnavailable, match=r"dataset 'ctc'(.|\n)*corpus.registry.versions"):
        curate("ctc")  # the renamed copy read as the release: stops, naming the version to pick


# ---- hub text sets as huggingface-cli download gives them today -----------------------------------

def _parquet(path, records: list[dict], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


PUBMEDQA_CONTEXT = pa.struct([(name, pa.list_(pa.string())) for name in
                              ("contexts", "labels", "meshes", "reasoning_required_pred", "reasoning_free_pred")])
PUBMEDQA_SCHEMA = pa.schema([("pubid", pa.int32()), ("question", pa.string()), ("context", PUBMEDQA_CONTEXT),
                             ("long_answer", pa.string()), ("final_decision", pa.string())])


def _pubmedqa(pubid: int, decision: str, contexts: list[str]) -> dict:
    return {"pubid": pubid, "question": f"Question {pubid}?", "long_answer": "Because.", "final_decision": decision,
            "context": {"contexts": contexts, "labels": ["BACKGROUND", "RESULTS"][:len(contexts)],
                        "meshes": ["Humans"], "reasoning_required_pred": ["y", "e", "s"],
                        "reasoning_free_pred": ["y", "e", "s"]}}


def test_pubmedqa_reads_pqa_labeled_beside_the_artificial_and_unlabeled_configs(tmp_path, curate):
    root = dataset(tmp_path, "pubmedqa")
    _parquet(root / "pqa_labeled/train-00000-of-00001.parquet",
             [_pubmedqa(21645374, "yes", ["Programmed cell death ...", "The following ..."]),
              _pubmedqa(16418930, "maybe", ["Only one context."]),
              _pubmedqa(9488747, "Perhaps", ["A decision no option names."])], PUBMEDQA_SCHEMA)
    _parquet(root / "pqa_artificial/train-00000-of-00001.parquet", [_pubmedqa(1, "no", ["generated"])], PUBMEDQA_SCHEMA)
    _parquet(root / "pqa_unlabeled/train-00000-of-00001.parquet",
             [{k: v for k, v in _pubmedqa(2, "", ["unlabeled"]).items() if k != "final_decision"}])
    _hf_cache(root, "pqa_labeled/train-00000-of-00001.parquet", "pqa_artificial/train-00000-of-00001.parquet")
    report = curate("pubmedqa")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert sorted(rows) == ["pubmedqa:16418930", "pubmedqa:21645374"]
    prompt = rows["pubmedqa:21645374"]["messages"][0]["content"]
    assert "Programmed cell death ... The following ..." in prompt and "BACKGROUND" not in prompt
    assert rows["pubmedqa:21645374"]["answer"] == "A" and rows["pubmedqa:16418930"]["answer"] == "C"
    assert [(q["reason"], q["file"], q["record"]) for q in quarantine(report)] == [
        ("malformed_record", "pqa_labeled/train-00000-of-00001.parquet", "row 3")]
    assert accounted(report)


def _medmcqa(row_id: str, cop: int) -> dict:
    return {"id": row_id, "question": f"Question {row_id}", "opa": "Hyperplasia", "opb": "Hypertrophy",
            "opc": "Atrophy", "opd": "Dysplasia", "cop": cop, "choice_type": "single", "exp": None,
            "subject_name": "Anatomy", "topic_name": None}


def test_medmcqa_reads_the_train_shard_not_the_validation_and_test_shards_beside_it(tmp_path, curate):
    root = dataset(tmp_path, "medmcqa")
    _parquet(root / "data/train-00000-of-00001.parquet", [_medmcqa("a1", 2), _medmcqa("a2", 0)])
    _parquet(root / "data/validation-00000-of-00001.parquet", [_medmcqa("v1", 1)])
    _parquet(root / "data/test-00000-of-00001.parquet", [_medmcqa("t1", -1)])  # the hidden test key
    _hf_cache(root, "data/train-00000-of-00001.parquet")
    report = curate("medmcqa")
    assert {row["id"]: row["answer"] for row in kept_rows(report)} == {"medmcqa:a1": "C", "medmcqa:a2": "A"}
    assert report["quarantined"] == 0 and accounted(report)


def test_medqa_reads_the_train_jsonl_not_the_test_jsonl_beside_it(tmp_path, curate):
    root = dataset(tmp_path, "medqa")
    record = {"question": "A 23-year-old pregnant woman ...", "answer": "Nitrofurantoin",
              "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
              "meta_info": "step2&3", "answer_idx": "D", "metamap_phrases": ["pregnant woman"]}
    write_file(root, "phrases_no_exclude_train.jsonl", json.dumps(record) + "\n" + json.dumps({**record, "answer_idx": "E"})
               + "\n")
    write_file(root, "phrases_no_exclude_test.jsonl", json.dumps({**record, "answer_idx": "A"}) + "\n")
    write_file(root, "README.md", "---\nlicense: cc-by-4.0\n---\n")
    _hf_cache(root, "phrases_no_exclude_train.jsonl")
    report = curate("medqa")
    assert [row["answer"] for row in kept_rows(report)] == ["D"]
    assert [(q["reason"], q["file"], q["record"]) for q in quarantine(report)] == [
        ("malformed_record", "phrases_no_exclude_train.jsonl", "line 2")]  # an answer_idx no option has
    assert accounted(report)


def test_medical_o1_reads_the_english_file_among_the_four_the_repository_ships(tmp_path, curate):
    root = dataset(tmp_path, "medical_o1_reasoning_sft")
    english = [{"Question": "Given sudden weakness ...", "Complex_CoT": "Okay, let's see.", "Response": "A PFO."}]
    write_file(root, "medical_o1_sft.json", json.dumps(english, indent=2))
    for other in ("medical_o1_sft_Chinese.json", "medical_o1_sft_mix.json", "medical_o1_sft_mix_Chinese.json"):
        write_file(root, other, json.dumps([{"Question": "问题", "Complex_CoT": "思考", "Response": "回答"}] * 2))
    _hf_cache(root, "medical_o1_sft.json")
    report = curate("medical_o1_reasoning_sft")
    rows = kept_rows(report)
    assert len(rows) == 1 and rows[0]["messages"][1]["content"] == "<think>\nOkay, let's see.\n</think>\nA PFO."
    assert report["rows_in"] == 1 and accounted(report)


def test_healthcaremagic_reads_its_hashed_parquet_shard_name(tmp_path, curate):
    root = dataset(tmp_path, "chatdoctor_healthcaremagic_100k")
    instruction = "If you are a doctor, please answer the medical questions based on the patient's description."
    _parquet(root / "data/train-00000-of-00001-5e7cb295b9cff0bf.parquet",
             [{"instruction": instruction, "input": "I have a cough.", "output": "Take rest."},
              {"instruction": instruction, "input": "Fever for days.", "output": None}])
    write_file(root, "README.md", "---\ndataset_info: {}\n---\n")
    _hf_cache(root, "data/train-00000-of-00001-5e7cb295b9cff0bf.parquet")
    report = curate("chatdoctor_healthcaremagic_100k")
    assert [row["answer"] for row in kept_rows(report)] == ["Take rest."]
    assert report["quarantined"] + report["filtered"] == 1 and accounted(report)


def test_a_png_fixture_name_is_unchanged_for_the_flat_mask_layouts(tmp_path, curate):
    """Bacteria's flat images/ + masks/ keep their record keys (the file stem) under the tree walk."""
    root = dataset(tmp_path, "bacteria")
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[4:8, 4:8] = 3
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    names = [f"colony{i}" for i in range(40)]
    for i, name in enumerate(names):
        write_file(root, f"images/{name}.png", png_bytes(32, 32, seed=i))
        write_file(root, f"masks/{name}.png", buffer.getvalue())
    report = curate("bacteria")
    kept = sorted(row["id"].split(":")[1] for row in kept_rows(report))
    assert kept and all(name in names for name in kept)
    assert report["filtered_by_reason"] == {"subset": 40 - len(kept)} and accounted(report)

"""Every registry benchmark read from a copy laid out as its publisher releases it: the gold round
trip (its own gold answers score perfectly, a wrong answer 0, an unparseable one is counted), and
loading that is complete or loud (empty pattern, missing image, unreadable gold, short copy)."""

from __future__ import annotations

import json
import shutil

import pytest
from benchmark_releases import BUILDERS, build_release
from fixtures_formats import png_bytes, write_file

from medmo_pipeline.data.benchmarks.checks import BenchmarkLoadError
from medmo_pipeline.data.benchmarks.loading import load_benchmark, load_counted
from medmo_pipeline.data.benchmarks.registry import PENDING_METRICS, load_registry
from medmo_pipeline.evaluation.scoring import question_kind, score_benchmark, score_rows
from medmo_pipeline.schema.rows import validate_row

REGISTRY = load_registry()
FILE_BENCHMARKS = REGISTRY.paper_benchmarks()


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("PHYSIONET_USERNAME", "tester")
    monkeypatch.setenv("STANFORD_AIMI_AGREEMENT", "accepted")
    for variable in ("MEDMO_RATESCORE_NER_MODEL", "MEDMO_RATESCORE_EVAL_MODEL", "MEDMO_CHEXBERT_CHECKPOINT",
                     "MEDMO_BERT_BASE_DIR", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def test_every_paper_benchmark_has_a_release_fixture_and_a_layout_source():
    assert sorted(BUILDERS) == sorted(FILE_BENCHMARKS)
    assert all(REGISTRY.get(name).layout_source for name in FILE_BENCHMARKS)


def _gold(row: dict) -> str:
    return row["answer"] if question_kind(row) is not None else row["messages"][-1]["content"]


def _wrong(row: dict) -> str:
    if row["task"] == "grounding":
        return "Elsewhere <box>[[0, 0, 1, 1]]</box>" if row["boxes"][0]["x1"] > 5 else "x <box>[[990, 990, 1000, 1000]]</box>"
    kind = question_kind(row)
    if kind == "closed":
        return "no" if row["answer"].lower() == "yes" else "yes"
    if kind == "multiple_choice":
        return "AB"[row["answer"] == "A"]
    return "qqqq zzzz"


def _values(rows, predictions):
    declared = REGISTRY.get(rows[0]["source"]).metrics
    scores = score_benchmark(rows, predictions, declared)
    assert set(scores.not_computed) <= PENDING_METRICS  # only the model-based plug-ins may be missing here
    return {result.name: result for result in scores.results}


# The perfect score of each metric family: CIDEr-D of a perfect reply is 10 on pycocoevalcap's scale
# when every n-gram order has an n-gram not in every reference; IoU is 1 up to the 0-1000 rounding.
def _perfect(metric: str) -> float:
    return 10.0 if metric.endswith("cider") else 1.0


@pytest.mark.parametrize("name", FILE_BENCHMARKS)
def test_gold_round_trip(tmp_path, credentials, name):
    release = build_release(name, tmp_path)
    load = load_counted(name, None, root=tmp_path, partial=True)
    rows = load.rows
    assert len(rows) == release.rows > 0 and load.filtered == release.filtered
    for row in rows:
        validate_row(row)
        assert row["source"] == name and row["id"].startswith(f"{name}:") and row["split"] == "eval"
        assert all(image["bytes"] for image in row["images"])
    perfect = _values(rows, [_gold(row) for row in rows])
    wrong = _values(rows, [_wrong(row) for row in rows])
    headline = "accuracy" if REGISTRY.get(name).group in ("vqa", "text_qa") else REGISTRY.get(name).metrics[0]
    for metric, result in perfect.items():
        if metric.startswith(("grounding_const", "grounding_acc")) or metric == "open_vqa_token_f1":
            continue
        expected = _perfect(metric)
        tolerance = 0.03 if "iou" in metric else 1e-6  # small fixture images: 0-1000 rounding moves a box edge
        assert result.value == pytest.approx(expected, abs=tolerance * expected), (metric, result.value)
        assert wrong[metric].value == pytest.approx(0.0, abs=1e-9), (metric, wrong[metric].value)
    assert headline in perfect
    unparseable = _values(rows, ["I cannot tell from this image." for _ in rows])
    if REGISTRY.get(name).group in ("vqa", "text_qa"):
        counted = sum(question_kind(row) in ("closed", "multiple_choice") for row in rows)
        assert unparseable["accuracy"].value == 0 and unparseable["accuracy"].unparseable == counted > 0


def test_mmmu_keeps_every_image_in_order_and_reads_open_questions(tmp_path):
    build_release("mmmu_med", tmp_path)
    rows = {row["id"]: row for row in load_benchmark("mmmu_med", None, root=tmp_path, partial=True)}
    multi = rows["mmmu_med:Clinical_Medicine/validation_Clinical_Medicine_2"]
    assert [image["width"] for image in multi["images"]] == [21, 22, 23, 24]  # image_1 .. image_4, in order
    assert multi["choices"] == ["<image 2>", "<image 3>", "<image 4>"] and multi["answer"] == "B"
    open_row = rows["mmmu_med:Pharmacy/validation_Pharmacy_3"]
    assert open_row["choices"] == [] and open_row["answer"] == "24" and question_kind(open_row) == "open"
    assert rows["mmmu_med:Pharmacy/validation_Pharmacy_1"]["choices"][2] == "Heart's apex"


def test_pmc_vqa_v2_reads_the_letter_in_answer(tmp_path):
    build_release("pmc_vqa", tmp_path)
    rows = load_benchmark("pmc_vqa", None, root=tmp_path, partial=True)
    assert [row["answer"] for row in rows] == ["B", "D"]


def test_medsg_replies_in_its_own_box_form_are_read_and_multi_view_answers_rescaled(tmp_path):
    build_release("medsg_multi_view", tmp_path)
    (row,) = load_benchmark("medsg_multi_view", None, root=tmp_path, partial=True)
    # The answer (100, 60, 200, 160) is in the 400 x 300 `size` frame; the first image is 200 x 150.
    assert [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in row["boxes"]] == [(50.0, 30.0, 100.0, 80.0)]
    assert len(row["images"]) == 2 and "<image>" not in row["messages"][0]["content"]
    medsg_reply = "<|box_start|>(250,200),(500,533)<|box_end|>"  # the 0-1000 form of that box, MedSG style
    values = _values([row], [medsg_reply])
    assert values["grounding_mean_iou"].value == pytest.approx(1.0, abs=0.01)


def test_iu_xray_studies_without_findings_or_impression_are_filtered_and_counted(tmp_path):
    build_release("iu_xray", tmp_path)
    load = load_counted("iu_xray", None, root=tmp_path, partial=True)
    assert load.filtered == {"empty_reference": 1} and load.read == 3 and len(load.rows) == 2
    assert load.counts()["rows_filtered"] == {"empty_reference": 1}
    assert all(row["messages"][-1]["content"] for row in load.rows)


def test_omnimedvqa_flattened_layout_is_read_too(tmp_path):
    build_release("omnimedvqa", tmp_path / "zip")
    shutil.copytree(tmp_path / "zip" / "OmniMedVQA", tmp_path / "flat")
    assert len(load_benchmark("omnimedvqa", None, root=tmp_path / "flat", partial=True)) == 2


# ---- loud failures ---------------------------------------------------------------------------

def test_a_pattern_matching_nothing_fails_naming_the_pattern_and_how_to_get_it(tmp_path):
    (tmp_path / "pqa_labeled").mkdir()
    (tmp_path / "pqa_labeled" / "README.md").write_text("not the data")
    with pytest.raises(BenchmarkLoadError, match=r"benchmark 'pubmedqa': no file under .* matches "
                       r"'data/ori_pqal\.json' or 'pqa_labeled/train-\*\.parquet'\. Get it with: git clone "
                       r"https://github\.com/pubmedqa/pubmedqa"):
        load_benchmark("pubmedqa", None, root=tmp_path)


def test_a_missing_image_fails_the_load_naming_the_file_and_row(tmp_path):
    build_release("pmc_vqa", tmp_path)
    (tmp_path / "figures" / "PMC8253867_Fig2_41.jpg").unlink()
    with pytest.raises(BenchmarkLoadError) as error:
        load_benchmark("pmc_vqa", None, root=tmp_path, partial=True)
    assert ("benchmark 'pmc_vqa': 1 row(s) cannot be evaluated (test_2.csv, row 2 (pmc_vqa:1): image file "
            "'figures/PMC8253867_Fig2_41.jpg' is missing)") in str(error.value)


@pytest.mark.parametrize(("gold", "said"), [
    ("F", r"phrases_no_exclude_test\.jsonl, line 2: malformed_record: .*answer_idx 'F' names none of its 4 options\)"),
    ("", r"line 2 \(medqa:1\): no gold answer \(its answer field is empty\)"),  # empty, not "names none"
])
def test_an_unreadable_gold_answer_fails_the_load_naming_the_file_and_row(tmp_path, gold, said):
    build_release("medqa", tmp_path)
    path = tmp_path / "phrases_no_exclude_test.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[1]["answer_idx"] = gold
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(BenchmarkLoadError, match=said):
        load_benchmark("medqa", None, root=tmp_path, partial=True)


def test_an_unreadable_gold_box_fails_the_load_naming_the_file_and_row(tmp_path):
    build_release("medsg_referring", tmp_path)
    records = [{"task": "referring", "images": ["MedSG-Bench/Task8/AbdomenCT1K_liver.png"], "question": "Where?",
                "answer": []}]
    write_file(tmp_path, "Task8.json", json.dumps(records))
    with pytest.raises(BenchmarkLoadError, match=r"Task8\.json, row 1 \(medsg_referring:referring/Task8/0\): no box readable"):
        load_benchmark("medsg_referring", None, root=tmp_path, partial=True)


def test_a_copy_shorter_than_the_documented_release_fails_unless_partial(tmp_path):
    build_release("vqa_rad", tmp_path)
    with pytest.raises(BenchmarkLoadError, match=r"benchmark 'vqa_rad': .* holds 4 rows .*fewer than the 451 of the "
                       r"full release"):
        load_benchmark("vqa_rad", None, root=tmp_path)
    assert len(load_benchmark("vqa_rad", None, root=tmp_path, partial=True)) == 4


def test_medsg_json_under_another_name_and_absolute_release_paths_are_read(tmp_path):
    write_file(tmp_path, "images/Task8/liver.png", png_bytes(336, 336))
    records = [{"task": "referring", "images": ["/root/autodl-tmp/MedSG_Data/images/Task8/liver.png"],
                "question": "Where is the liver?", "answer": [157, 130, 254, 246]}]
    write_file(tmp_path, "MedSG-Bench/referring_test.json", json.dumps(records))
    (row,) = load_benchmark("medsg_referring", None, root=tmp_path, partial=True)
    assert row["images"][0]["path"] == "images/Task8/liver.png"


def test_a_reader_that_reads_no_rows_fails(tmp_path):
    write_file(tmp_path, "Task3.json", "[]")
    with pytest.raises(BenchmarkLoadError, match=r"benchmark 'medsg_multi_view': loader medsg_json read no rows"):
        load_benchmark("medsg_multi_view", None, root=tmp_path, partial=True)


def test_benchmarks_root_follows_the_data_root(tmp_path, monkeypatch):
    from medmo_pipeline.data.benchmarks.loading import benchmarks_dir

    monkeypatch.delenv("MEDMO_BENCHMARKS_ROOT", raising=False)
    monkeypatch.setenv("MEDMO_DATA_ROOT", str(tmp_path))
    assert benchmarks_dir() == tmp_path / "benchmarks"
    build_release("medqa", tmp_path / "benchmarks" / "medqa")
    assert len(load_benchmark("medqa", None, partial=True)) == 2
    monkeypatch.setenv("MEDMO_BENCHMARKS_ROOT", str(tmp_path / "elsewhere"))
    assert benchmarks_dir() == tmp_path / "elsewhere"
    (tmp_path / "elsewhere" / "medsg").mkdir(parents=True)
    write_file(tmp_path / "elsewhere" / "medsg", "Task8.json", json.dumps(MEDSG_ONE))
    write_file(tmp_path / "elsewhere" / "medsg", "x.png", png_bytes(10, 10))
    assert len(load_benchmark("medsg_referring", None, partial=True)) == 1  # the sub-tasks share medsg/


MEDSG_ONE = [{"task": "referring", "images": ["x.png"], "question": "Where?", "answer": [1, 1, 5, 5]}]


def test_mimic_reads_only_the_split_s_test_studies_and_a_missing_report_fails_naming_it(tmp_path, credentials):
    build_release("mimic_cxr", tmp_path)
    ids = {row["id"] for row in load_benchmark("mimic_cxr", None, root=tmp_path, partial=True)}
    assert "mimic_cxr:p10/p10000032/s50414267" in ids and not any("s59999999" in i for i in ids)
    (tmp_path / "files/p10/p10000032/s53189527.txt").unlink()
    with pytest.raises(BenchmarkLoadError, match=r"mimic-cxr-2\.0\.0-split\.csv\.gz, row 4 \(s53189527\): "
                       r"unreadable_file: report files/p10/p10000032/s53189527\.txt of a test study is missing"):
        load_benchmark("mimic_cxr", None, root=tmp_path, partial=True)


def test_a_record_the_adapter_quarantines_fails_the_load_naming_it(tmp_path):
    build_release("pmc_vqa", tmp_path)
    path = tmp_path / "test_2.csv"
    path.write_text(path.read_text().replace("PMC8253867_Fig2_41.jpg", "../../etc/passwd"))
    with pytest.raises(BenchmarkLoadError, match=r"test_2\.csv, row 2: unsafe_path: .*climbs out"):
        load_benchmark("pmc_vqa", None, root=tmp_path, partial=True)


def test_mimic_without_the_split_file_reads_every_study_of_the_copy(tmp_path, credentials):
    build_release("mimic_cxr", tmp_path)
    (tmp_path / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    load = load_counted("mimic_cxr", None, root=tmp_path, partial=True)
    assert len(load.rows) == 4 and load.filtered == {"empty_reference": 1}  # the training study too: no split
    replies = {row["id"]: row["messages"][-1]["content"] for row in load.rows}
    assert "Lungs are clear" in replies["mimic_cxr:p10/p10000040/s52222222"]  # FINDINGS AND IMPRESSION: kept


def test_iu_xray_as_kaggle_ships_it_is_read_when_no_test_list_is_given(tmp_path):
    build_release("iu_xray", tmp_path)
    (tmp_path / "indiana_reports_test.csv").rename(tmp_path / "indiana_reports.csv")
    load = load_counted("iu_xray", None, root=tmp_path, partial=True)
    assert len(load.rows) == 2 and load.filtered == {"empty_reference": 1} and load.files == ["indiana_reports.csv"]


def test_medqa_parquet_conversion_is_read_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    build_release("medqa", tmp_path / "jsonl")
    lines = (tmp_path / "jsonl" / "phrases_no_exclude_test.jsonl").read_text().splitlines()
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in lines]),
                   tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")
    rows = load_benchmark("medqa", None, root=tmp_path / "hub", partial=True)
    assert [row["answer"] for row in rows] == ["D", "D"]


def test_pubmedqa_scores_the_500_test_questions_of_the_repository_or_the_hub_copy(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    build_release("pubmedqa", tmp_path / "repo")
    repo = load_counted("pubmedqa", None, root=tmp_path / "repo", partial=True)
    assert sorted(row["id"] for row in repo.rows) == ["pubmedqa:21645374", "pubmedqa:21645375", "pubmedqa:21645376"]
    assert repo.filtered == {"subset": 1}
    hub = tmp_path / "hub"
    (hub / "pqa_labeled").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"pubid": 21645374 + i, "question": f"Q{i}?", "context": {"contexts": ["c"], "labels": ["L"], "meshes": []},
         "long_answer": "a", "final_decision": decision} for i, decision in enumerate(["yes", "no", "maybe"])]),
        hub / "pqa_labeled" / "train-00000-of-00001.parquet")
    test_list = tmp_path / "repo" / "data" / "test_ground_truth.json"
    shutil.copy(test_list, hub / "test_ground_truth.json")
    hub_load = load_counted("pubmedqa", None, root=tmp_path / "hub", partial=True)
    assert [row["answer"] for row in hub_load.rows] == ["A", "B", "C"] and hub_load.filtered == {}
    test_list.unlink()
    with pytest.raises(Exception, match="test_ground_truth.json"):  # the repository copy without its test list
        load_counted("pubmedqa", None, root=tmp_path / "repo", partial=True)


VQA_RAD_FILE = "data/test-00000-of-00001-e5bc3d208bb4deeb.parquet"


def _edit_parquet(path, index: int, **fields) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    records = table.to_pylist()
    records[index] = {**records[index], **fields}
    pq.write_table(pa.Table.from_pylist(records, schema=table.schema), path)


def _second_takes_first_id(path, field: str) -> None:
    records = json.loads(path.read_text())
    records[1] = {**records[1], field: records[0][field]}
    path.write_text(json.dumps(records))


def _edit_text(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(("benchmark", "damage", "problem"), [
    ("vqa_rad", lambda root: _edit_parquet(root / VQA_RAD_FILE, 2, answer="..."), "holds no word to score against"),
    ("vqa_rad", lambda root: _edit_parquet(root / VQA_RAD_FILE, 0, image={"bytes": b"no image", "path": "a.jpg"}),
     "image 'a.jpg' cannot be read"),
    ("medsg_referring", lambda root: _edit_text(root / "Task8.json", "[157, 130, 254, 246]", "[157, 130, 1e308, 1e308]"),
     r"Task8\.json, row 1 .*(OverflowError|not a box inside)"),
    ("medsg_referring", lambda root: _edit_text(root / "Task8.json", "[157, 130, 254, 246]", "[157, 130, 5000, 4000]"),
     r"gold box \[157\.0, 130\.0, 5000\.0, 4000\.0\] is not a box inside its 336 x 336 image"),
    ("mmmu_med", lambda root: _edit_parquet(root / "Pharmacy/validation-00000-of-00001.parquet", 0,
                                            image_1={"bytes": None, "path": "../../slake/imgs/xmlab1/source.jpg"}),
     r"validation-00000-of-00001\.parquet, row 1: unsafe_path"),
    # a 3 MB Python-literal options list (Python's parser would hold about 1.5 GB for it): refused unparsed
    ("mmmu_med", lambda root: _edit_parquet(root / "Pharmacy/validation-00000-of-00001.parquet", 0,
                                            options="[" + "0," * 1_500_000 + "]"),
     r"row 1: malformed_record: .*a literal list of 3,000,002 characters"),
    ("pmc_vqa", lambda root: _edit_text(root / "test_2.csv", ",B,test", ",Both,test"),
     r"test_2\.csv, row 1: malformed_record: .*Answer 'Both' names none of its 4 options"),
    ("slake", lambda root: _second_takes_first_id(root / "test.json", "qid"),
     r"id 'slake:\w+' is also the id of test\.json row 1"),
    ("pubmedqa", lambda root: (root / "data/test_ground_truth.json").write_text(json.dumps(
        {**json.loads((root / "data/test_ground_truth.json").read_text()), "99999999": "yes"})),
     "lists pubid '99999999', which no record"),
])
def test_a_benchmark_row_that_could_not_be_scored_as_its_release_means_fails_the_load_naming_it(
        tmp_path, benchmark, damage, problem):
    """Each of these loaded and then crashed scoring after generation (a gold of punctuation only,
    a box past float range), raised a bare library error (a path out of the root), or was scored
    wrongly: a gold box outside its image, "Both" read as option B, two rows of one id (their
    predictions kept by id), bytes that are no image (dropped at evaluation), a listed test id
    with no record (scores over fewer rows)."""
    build_release(benchmark, tmp_path)
    damage(tmp_path)
    with pytest.raises(BenchmarkLoadError, match=problem):
        load_counted(benchmark, None, root=tmp_path, partial=True)


def test_a_multiple_choice_benchmark_row_whose_gold_names_no_option_fails_the_load(tmp_path):
    build_release("medxpertqa_mm", tmp_path)
    path = tmp_path / "MM/test.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records[0]["label"] = "F"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(BenchmarkLoadError, match="names no option its question lists"):
        load_counted("medxpertqa_mm", None, root=tmp_path, partial=True)


def test_grounding_scores_read_the_answer_not_a_box_tried_in_thinking(tmp_path):
    build_release("medsg_referring", tmp_path)
    (row,) = load_counted("medsg_referring", None, root=tmp_path, partial=True).rows[:1]
    gold = row["messages"][-1]["content"]
    prediction = f"<think>first guess <box>[[0, 0, 100, 100]]</box> is wrong</think><answer>{gold}</answer>"
    scores = {result.name: result.value for result in score_rows([row], [prediction])[0]}
    assert scores["grounding_first_box_mean_iou"] > 0.99

"""Bad data that reaches training despite curation (a shard edited or damaged on disk, a user's own shard
directory): one bad row never ends a job, it is skipped and counted; a stream of only bad rows ends the
job saying so instead of reading for ever; a shard that does not match its manifest is refused naming
the file; GRPO rows whose gold boxes the box reward cannot score are left out and counted."""

from __future__ import annotations

import copy
import io
import itertools
import json
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import tiny_processor
from PIL import Image

from medmo_pipeline.config import MixtureRecipe
from medmo_pipeline.data import mixture, shards, synthetic
from medmo_pipeline.data.model_images import skip_undecodable
from medmo_pipeline.training import examples, rl_rows, streamed
from medmo_pipeline.training.examples import sft_example, skip_bad_rows

TASKS = ["caption", "vqa", "report", "grounding", "text_qa", "instruction"]


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return tiny_processor(tmp_path_factory)


def _rows(n: int = 8) -> list[dict]:
    return [r for s in ("synth_xray", "synth_cells", "synth_medqa") for r in synthetic.generate_rows(s, "train", n, image_size=32)]


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def _jpeg_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _bad_image_rows(row: dict) -> dict[str, dict]:
    good = row["images"][0]["bytes"]
    variants = {"truncated": good[: len(good) // 2], "random": np.random.default_rng(0).bytes(len(good)),
                "png_100000x100000": _png_declaring(100_000, 100_000), "jpeg_bomb": _jpeg_declaring(65_000, 65_000),
                "zero_bytes": b"", "null": None}
    out = {}
    for name, data in variants.items():
        bad = copy.deepcopy(row)
        bad["images"][0]["bytes"], bad["id"] = data, f"bad:{name}"
        out[name] = bad
    return out


def _malformed_rows(row: dict) -> dict[str, dict]:
    question, reply = row["messages"]
    return {name: {**row, "id": f"bad:{name}", **fields} for name, fields in {
        "no_messages": {"messages": []},  # was: ValueError in the collator (1 image, 0 placeholders)
        "no_assistant_turn": {"messages": [question]},  # was: trained with no loss at all
        "null_reply": {"messages": [question, {**reply, "content": None}]},  # was: TypeError in the template
        "null_images": {"images": None},  # was: TypeError in the decodability check
        "text_10_mb": {"messages": [question, {**reply, "content": "x " * 5_000_000}]},  # was: 12 s to tokenize
        "assistant_first": {"messages": [reply, question]},
    }.items()}


def test_sft_bad_rows_are_skipped_counted_and_named_and_the_rest_collate(processor):
    from medmo_pipeline.training.collation import answer_masked_collator

    rows = _rows()
    image_row = next(r for r in rows if r["images"] and r["task"] == "grounding")
    bad_images, malformed = _bad_image_rows(image_row), _malformed_rows(image_row)
    logged: list[str] = []
    decodable = skip_undecodable(lambda row: sft_example(row, "plain"), logged.append, pixels=True)
    example = skip_bad_rows(decodable, logged.append, needs_reply=True, give_up_after=100)
    stream = [*bad_images.values(), *malformed.values(), *rows]
    made = [e for e in map(example, stream) if e is not None]
    assert len(made) == len(rows)
    assert decodable.skipped == [f"bad:{name}" for name in bad_images]
    assert example.skipped == [f"bad:{name}" for name in malformed]
    for name in [*bad_images, *malformed]:  # each named in the log with its reason
        assert any(line.startswith(f"skipped row bad:{name}") for line in logged), name
    assert any(re.search(r": 100\d{5} characters of text", line) for line in logged if "text_10_mb" in line)
    batch = answer_masked_collator(processor, max_length=128)(made[:6])
    assert (batch["labels"] != -100).any(dim=1).all()  # every example kept has answer tokens to learn


def test_rl_malformed_rows_are_skipped_and_bad_gold_boxes_left_out_and_counted(processor):
    from medmo_pipeline.rewards.registry import box

    rows = [r for r in _rows(10) if r["task"] in ("grounding", "vqa") and r["images"]]
    grounding = next(r for r in rows if r["task"] == "grounding")
    gold = grounding["boxes"][0]
    width, height = rl_rows.image_size(grounding)
    unusable = {"nan": {**gold, "x1": math.nan}, "inverted": {**gold, "x1": gold["x2"], "x2": gold["x1"]},
                "outside_image": {**gold, "x1": width + 10.0, "x2": width + 20.0}, "null": {**gold, "y2": None}}
    with pytest.raises(ValueError, match="ground-truth boxes must be finite"):  # how the job ended before
        box([None], ["<answer>x</answer>"], task=["grounding"], boxes=[[unusable["nan"]]],
            image_width=[width], image_height=[height])
    for name, bad_box in unusable.items():
        kept, outcome = rl_rows.fit_prompt({**grounding, "boxes": [gold, bad_box]}, processor, None, "drop", "plain")
        assert kept is None and outcome == rl_rows.BAD_GOLD_BOX, name
    assert rl_rows.fit_prompt(grounding, processor, None, "drop", "plain") == (grounding, rl_rows.KEPT)
    assert "dropped unusable gold box" in rl_rows.describe({rl_rows.BAD_GOLD_BOX: 1})

    logged: list[str] = []
    decodable = skip_undecodable(lambda row: examples.rl_example(row, "plain"), logged.append, pixels=True)
    example = skip_bad_rows(decodable, logged.append, needs_reply=False, give_up_after=100)
    malformed = _malformed_rows(grounding)
    malformed.pop("no_assistant_turn")  # an RL row needs only its question
    malformed.pop("null_reply")
    malformed["null_choices"] = {**grounding, "id": "bad:null_choices", "choices": None}
    made = [e for e in map(example, [*_bad_image_rows(grounding).values(), *malformed.values(), *rows]) if e]
    assert len(made) == len(rows)
    assert len(decodable.skipped) == 6 and example.skipped == list(map("bad:{}".format, malformed))


def _corpus(root: Path, rows: dict[str, list[dict]]) -> dict:
    sources = {}
    for source, source_rows in rows.items():
        manifest = shards.write_shards(source_rows, root / source, shard_rows=8, source=source)
        sources[source] = {"path": str(root / source), "data_version": shards.manifest_hash(manifest)}
    return {"sources": sources}


def _stage_data(index: dict, to_example) -> streamed.StageData:
    """The stream a job reads, from the plan its mixture asset stored before the shards were damaged."""
    return streamed.StageData(index["plan"], 0, None, to_example, examples_per_step=2, index=index)


def test_a_stream_of_only_bad_rows_ends_the_job_naming_a_row_instead_of_reading_for_ever(tmp_path):
    from medmo_pipeline.training.stage import skip_limit

    rows = [r for r in synthetic.generate_rows("synth_xray", "train", 12, image_size=32) if r["images"]]
    broken = [{**r, "images": [{**r["images"][0], "bytes": b"not an image"}]} for r in rows]

    def stage_data(index: dict):
        decodable = skip_undecodable(lambda row: sft_example(row, "plain"), pixels=True)
        plan = mixture.plan(index, MixtureRecipe(sources=["synth_xray"], tasks=TASKS, shuffle_window=4))
        example = skip_bad_rows(decodable, needs_reply=True, give_up_after=skip_limit(plan))
        return streamed.StageData(plan, 0, None, example, examples_per_step=2, index=index), decodable

    data, decodable = stage_data(_corpus(tmp_path / "broken", {"synth_xray": broken}))
    with pytest.raises(ValueError, match=rf"{2 * len(rows)} rows in a row gave no training example, the last "
                                         "synth_xray:train-"):
        next(iter(data.dataset))  # was: the endless stream skipped rows for ever, and no batch was made
    assert len(decodable.skipped) == 2 * len(rows)  # two passes, each bad row counted as it was read
    # One good row among them is enough, wherever the passes put it: the stream goes on.
    for seed in range(3):
        good = seed * 4
        mixed = [*broken[:good], rows[good], *broken[good + 1:]]
        data, _ = stage_data(_corpus(tmp_path / f"mixed{seed}", {"synth_xray": mixed}))
        assert len(list(itertools.islice(data.dataset, 4))) == 4


@pytest.fixture
def corpus(tmp_path) -> tuple[dict, Path]:
    index = _corpus(tmp_path, {s: synthetic.generate_rows(s, "train", 20, image_size=32) for s in ("synth_xray", "synth_medqa")})
    index["plan"] = mixture.plan(index, MixtureRecipe(sources=list(index["sources"]), tasks=TASKS, shuffle_window=4))
    return index, tmp_path / "synth_xray" / "part-00001.parquet"


def _read(data: streamed.StageData, n: int = 40) -> int:
    return sum(1 for _ in itertools.islice(data.dataset, n))


def test_intact_shards_stream_and_each_is_hashed_once(corpus):
    index, _ = corpus
    data = _stage_data(index, lambda row: row)
    assert _read(data, 120) == 120  # three passes over the 40 rows
    assert data.shards.verified == {s["path"] for info in data.plan["sources"].values() for s in info["shards"]}


@pytest.mark.parametrize("damage", ["truncated", "missing", "grown"])
def test_a_shard_of_another_size_or_missing_is_refused_before_training_naming_it(corpus, damage):
    index, shard = corpus
    data = shard.read_bytes()
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(data[: len(data) // 2] if damage == "truncated" else data + b"\0")
    with pytest.raises(ValueError, match=rf"{shard}: (missing|\d+ bytes, its manifest says {len(data)})"):
        _stage_data(index, lambda row: row)  # before a row is read


@pytest.mark.parametrize("damage", ["bit_flip", "same_length_random"])
def test_a_shard_whose_bytes_changed_in_place_is_refused_naming_it_before_its_rows_are_read(corpus, damage):
    index, shard = corpus
    in_shard = set(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    data = bytearray(shard.read_bytes())
    if damage == "bit_flip":  # inside a data page: Parquet read it back without complaint, and it was trained on
        data[len(data) // 2] ^= 1
    else:
        data = np.random.default_rng(0).bytes(len(data))
    shard.write_bytes(bytes(data))
    served: list[str] = []
    stage_data = _stage_data(index, lambda row: served.append(row["id"]) or row)
    with pytest.raises(ValueError, match=rf"{shard}: sha256 differs from its manifest"):
        _read(stage_data, 200)
    assert served and not in_shard & set(served)


def test_a_manifest_edited_after_curation_is_refused(corpus):
    index, _ = corpus
    manifest_path = Path(index["sources"]["synth_medqa"]["path"]) / shards.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps(manifest, indent=4))  # the same manifest: the same data version
    _stage_data(index, lambda row: row)
    manifest_path.write_text(json.dumps(manifest | {"total_rows": 999}))
    with pytest.raises(ValueError, match=rf"{manifest_path}: changed since curation"):
        _stage_data(index, lambda row: row)


def test_an_sft_job_skips_bad_rows_and_reports_the_counts_in_its_log_metadata_and_mlflow(
        tmp_path, medmo_home, capfd):
    """One real SFT step of the tiny model over shards holding malformed and undecodable rows."""
    import mlflow

    from medmo_pipeline import home
    from medmo_pipeline.data import corpus
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.training import sft
    from tests.conftest import small_recipe_data, write_recipe

    data = small_recipe_data()
    stage = data["stages"]["stage1"]
    stage["mixture"]["tasks"] = TASKS
    stage["optim"].update(max_steps=1, per_device_train_batch_size=2, logging_steps=1)
    sources = {}
    for source in ("synth_xray", "synth_cells"):
        rows = [r for r in synthetic.generate_rows(source, "train", 12, image_size=32) if r["images"]]
        for i, row in enumerate(rows[:-2]):  # all but two rows of each source bad, half of each kind
            rows[i] = ({**row, "messages": row["messages"][:1]} if i % 2 else
                       {**row, "images": [{**row["images"][0], "bytes": b"junk"}]})
        manifest = shards.write_shards(rows, tmp_path / "corpus" / source, shard_rows=4, source=source)
        sources[source] = {"path": str(tmp_path / "corpus" / source), "data_version": shards.manifest_hash(manifest),
                           "revision": "", "rows": len(rows), "splits": manifest["splits"],
                           "shards": len(manifest["shards"])}
    index = corpus.write_index(tmp_path / "corpus", sources)
    texts = synthetic.iter_texts(r for s in synthetic.SYNTHETIC_SOURCES for r in synthetic.generate_rows(s, "train", 40))
    base = build_tiny_base_model(tmp_path / "base", texts=texts, spec={}, seed=1)
    sft.main(["--recipe", str(write_recipe(tmp_path / "recipe.yaml", data)), "--stage", "stage1",
              "--parent", str(base), "--corpus", index["index_path"], "--output", str(tmp_path / "out")])

    log = capfd.readouterr().err
    undecodable = log.count("image_undecodable: not an image")
    malformed = log.count("no assistant turn to learn")
    assert undecodable and malformed  # the stream met both kinds before it had a batch
    assert f"stage1: {undecodable} rows skipped as undecodable, {malformed} as malformed" in log
    result = json.loads(next(line for line in log.splitlines() if line.startswith("[medmo] result: "))
                        .removeprefix("[medmo] result: "))
    assert (result["rows_skipped_undecodable"], result["rows_skipped_malformed"]) == (undecodable, malformed)
    run = mlflow.MlflowClient(home.mlflow_tracking_uri()).get_run(result["mlflow_run_id"])
    assert run.data.metrics["rows_skipped_malformed"] == malformed
    assert run.data.metrics["rows_skipped_undecodable"] == undecodable


def test_held_out_rows_are_read_only_from_shards_that_match_their_manifest(tmp_path):
    from medmo_pipeline.data.benchmarks.loading import BenchmarkLoadError, synthetic_heldout

    index = _corpus(tmp_path, {"synth_xray": synthetic.generate_rows("synth_xray", "eval", 12, image_size=32)})
    assert len(synthetic_heldout(index)) == 12
    shard = tmp_path / "synth_xray" / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1  # Parquet reads such a flip back: it was scored as it was
    shard.write_bytes(bytes(data))
    with pytest.raises(BenchmarkLoadError, match=r"held-out rows of 'synth_xray'.*part-00001.parquet"):
        synthetic_heldout(index)


def test_evaluation_skips_and_counts_a_row_whose_images_are_null():
    from medmo_pipeline.data.model_images import decodable_rows

    rows = [r for r in _rows(4) if r["images"]][:3]
    logged: list[str] = []
    kept, skipped = decodable_rows([rows[0], {**rows[1], "images": None}, rows[2]], logged.append)
    assert [r["id"] for r in kept] == [rows[0]["id"], rows[2]["id"]] and skipped == 1  # was: a TypeError naming no row
    assert logged == [f"skipped row {rows[1]['id']}: image_missing: the row's images are NoneType, not a list"]

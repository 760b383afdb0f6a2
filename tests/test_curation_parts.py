"""A large source curates in parts side by side (real worker processes) and publishes one version."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medmo_pipeline.config import CorpusRecipe
from medmo_pipeline.data import shards
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.curation import parts as curation_parts
from medmo_pipeline.data.sources import curate_source, input_bytes
from tests.conftest import small_recipe_data


def corpus_recipe(**fields) -> CorpusRecipe:
    data = copy.deepcopy(small_recipe_data()["corpus"])
    data["synthetic"]["train_rows"] = {"synth_xray": 90}
    data["synthetic"]["eval_rows"] = {"synth_xray": 10}
    data["shard_rows"] = 40
    return CorpusRecipe.model_validate({**data, **fields})


def test_parts_share_out_the_rows_and_map_back_to_their_source_index():
    parts, chunk = 3, 4
    rows = list(range(50))
    seen = []
    for part in range(parts):
        local = list(curation_parts.part_rows(rows, part, parts, chunk))
        assert [curation_parts.source_index(i, part, parts, chunk) for i in range(len(local))] == local
        seen += local
    assert sorted(seen) == rows


def planned(corpus: CorpusRecipe) -> int:
    return curation_parts.planned_parts(corpus.curation_parts, corpus.split_above_bytes,
                                        lambda: input_bytes(corpus, "synth_xray"))


def test_only_a_source_above_the_threshold_is_split():
    assert planned(corpus_recipe()) == 1  # one part by default
    assert planned(corpus_recipe(curation_parts=3)) == 1  # 8 GiB threshold
    assert planned(corpus_recipe(curation_parts=3, split_above_bytes=1000)) == 3
    measured = []
    assert curation_parts.planned_parts(1, 0, lambda: measured.append(1) or 10) == 1
    assert measured == []  # one part asked for: the input is not even measured


def ids_and_texts(shard_dir: Path) -> list[tuple]:
    return sorted((r["id"], r["messages"][-1]["content"]) for r in shards.iter_rows(shard_dir))


@pytest.mark.slow
def test_a_source_curated_in_three_processes_keeps_what_one_process_keeps(tmp_path, monkeypatch):
    monkeypatch.setattr(curation_parts, "CHUNK_ROWS", 16)  # 100 rows: 7 chunks over 3 parts
    whole = curate_source(corpus_recipe(), "synth_xray", tmp_path / "one", seed=3, log=lambda _: None)
    split = curate_source(corpus_recipe(curation_parts=3, split_above_bytes=1000), "synth_xray", tmp_path / "three",
                          seed=3, log=lambda _: None)

    assert split["parts"] == 3 and "parts" not in whole
    assert ids_and_texts(Path(split["shard_dir"])) == ids_and_texts(Path(whole["shard_dir"]))
    for key in ("rows_in", "rows_kept", "quarantined", "contaminated", "duplicates_dropped", "splits"):
        assert split[key] == whole[key], key
    assert shards.verify_shards(Path(split["shard_dir"])) == []
    # Published once: the version directory and its quarantine table, no staging or part directories left.
    names = [p.name for p in (tmp_path / "three" / "synth_xray").iterdir() if not p.name.endswith(".lock")]
    assert sorted(names) == sorted([split["data_version"], f"{split['data_version']}.quarantine.parquet"])
    # Deterministic: curating again in parts gives the same version.
    again = curate_source(corpus_recipe(curation_parts=3, split_above_bytes=1000), "synth_xray",
                          tmp_path / "again", seed=3, log=lambda _: None)
    assert again["data_version"] == split["data_version"]


def test_the_merge_drops_rows_an_earlier_part_kept(tmp_path):
    from medmo_pipeline.data.synthetic import generate_rows

    rows = list(generate_rows("synth_xray", "train", 12, seed=1, image_size=64))
    same_id = {**rows[7], "messages": [dict(m) for m in rows[7]["messages"]]}
    same_id["id"] = rows[2]["id"].split(":", 1)[1]  # the adapter's local id: curation prefixes the source
    same_id["messages"][-1]["content"] = same_id["messages"][-1]["content"] + " (second reading)"
    same_content = {**rows[3], "id": "another-id"}
    part0 = [{**r, "id": r["id"].split(":", 1)[1]} for r in rows[:6]]
    part1 = [{**r, "id": r["id"].split(":", 1)[1]} for r in rows[6:]] + [same_id, same_content]
    reports = []
    for part, part_rows in enumerate([part0, part1]):
        report = curate(part_rows, tmp_path / f"part-{part}", source="synth_xray", shard_rows=5,
                        quarantine_path=tmp_path / f"part-{part}.quarantine.parquet")
        assert report["rows_kept"] == len(part_rows)  # nothing repeats inside a part
        reports.append(report)

    merged = curation_parts.merge_parts(reports, tmp_path / "merged", source="synth_xray", shard_rows=5,
                                        revision="r", parts=2, chunk=100)

    assert merged["rows_in"] == 14 and merged["rows_kept"] == 12
    assert merged["quarantined_by_reason"] == {"duplicate_id": 1} and merged["duplicates_dropped"] == 1
    assert [r["id"] for r in shards.iter_rows(tmp_path / "merged")] == [r["id"] for r in rows]
    (record,) = pq.read_table(merged["quarantine_path"]).to_pylist()
    assert record["reason"] == "duplicate_id" and record["row_id"] == rows[2]["id"]

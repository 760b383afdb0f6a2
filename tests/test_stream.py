"""The stage data stream: its plan (counts from the shards' small columns), one pass over each source,
explicit weights, determinism, exact seeking, rank parts, and the trainer dataset built on it."""

from __future__ import annotations

import collections
import itertools
from pathlib import Path

import pytest

from medmo_pipeline.config import MixtureRecipe
from medmo_pipeline.data import mixture, shards, stream, synthetic

TASKS = ["caption", "vqa", "report", "grounding", "text_qa", "instruction"]
ROWS = {"synth_xray": 150, "synth_cells": 70, "synth_medqa": 40}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpus")
    sources = {}
    for source, n in ROWS.items():
        rows = [*synthetic.generate_rows(source, "train", n, image_size=32),
                *synthetic.generate_rows(source, "eval", 5, image_size=32)]
        manifest = shards.write_shards(rows, root / source, shard_rows=32, source=source)
        sources[source] = {"path": str(root / source), "data_version": shards.manifest_hash(manifest)}
    return {"sources": sources}


def take(rows, n: int) -> list[dict]:
    return [row for _, row in itertools.islice(rows, n)]


def ids(rows) -> list[str]:
    return [row["id"] for row in rows]


def train_ids(source: str) -> list[str]:
    return [r["id"] for r in synthetic.generate_rows(source, "train", ROWS[source], image_size=32)]


def test_a_list_of_sources_is_one_pass_over_each(index):
    recipe = MixtureRecipe(sources=list(ROWS), tasks=TASKS, shuffle_window=20)
    plan = mixture.plan(index, recipe)
    assert plan["weighting"] == "rows"
    assert {name: info["quota"] for name, info in plan["sources"].items()} == ROWS  # no eval rows
    assert plan["planned_samples"] == sum(ROWS.values())
    assert sum(plan["sources"]["synth_xray"]["rows"].values()) == ROWS["synth_xray"]
    drawn = take(stream.MixtureStream(plan, seed=3).rows(), plan["planned_samples"])
    assert sorted(ids(drawn)) == sorted(i for s in ROWS for i in train_ids(s))  # every row exactly once
    assert ids(drawn) != sorted(ids(drawn))  # shuffled
    # Sources are spread through the pass, not one after another: each tenth holds its share.
    tenth = plan["planned_samples"] // 10
    for chunk in range(10):
        counts = collections.Counter(r["source"] for r in drawn[chunk * tenth:(chunk + 1) * tenth])
        assert abs(counts["synth_xray"] - tenth * 150 / 260) <= 2, counts


def test_max_samples_scales_a_list_down_and_never_adds_passes(index):
    smaller = mixture.plan(index, MixtureRecipe(sources=list(ROWS), tasks=TASKS, max_samples=130))
    assert {n: i["quota"] for n, i in smaller["sources"].items()} == {"synth_xray": 75, "synth_cells": 35,
                                                                      "synth_medqa": 20}
    larger = mixture.plan(index, MixtureRecipe(sources=list(ROWS), tasks=TASKS, max_samples=10_000))
    assert larger["planned_samples"] == sum(ROWS.values())


def test_explicit_weights_and_task_weights(index):
    recipe = MixtureRecipe(sources={"synth_cells": 1, "synth_xray": 3}, tasks=["grounding", "vqa"],
                           task_weights={"grounding": 2}, max_samples=400)
    plan = mixture.plan(index, recipe)
    assert plan["weighting"] == "explicit"
    assert {n: i["quota"] for n, i in plan["sources"].items()} == {"synth_cells": 100, "synth_xray": 300}
    xray = plan["sources"]["synth_xray"]
    assert xray["weighted_rows"] == 2 * xray["rows"]["grounding"] + xray["rows"]["vqa"]
    drawn = take(stream.MixtureStream(plan, seed=0).rows(), 400)
    assert collections.Counter(r["source"] for r in drawn) == {"synth_cells": 100, "synth_xray": 300}
    # More samples than weighted rows: the first pass holds every X-ray row (grounding twice), then passes again.
    first_pass = [r for r in drawn if r["source"] == "synth_xray"][:xray["weighted_rows"]]
    per_row = collections.Counter(ids(first_pass))
    assert {per_row[r["id"]] for r in first_pass if r["task"] == "grounding"} == {2}
    assert {per_row[r["id"]] for r in first_pass if r["task"] == "vqa"} == {1}
    # The copies are spread through the pass: each half of it holds grounding and VQA rows in proportion.
    half = len(first_pass) // 2
    for part in (first_pass[:half], first_pass[half:]):
        share = sum(r["task"] == "grounding" for r in part) / len(part)
        assert abs(share - 2 * xray["rows"]["grounding"] / xray["weighted_rows"]) < 0.1, share
    table = mixture.markdown(plan)
    assert f"| synth_xray | {xray['rows']['grounding']} | {xray['rows']['vqa']} | {xray['weighted_rows']} | 300 |" in table
    assert "**400** samples planned (explicit weighting)" in table


def test_same_seed_and_corpus_same_stream_other_seed_other_order(index):
    plan = mixture.plan(index, MixtureRecipe(sources=list(ROWS), tasks=TASKS, shuffle_window=16))
    first = ids(take(stream.MixtureStream(plan, seed=7).rows(), 500))
    assert first == ids(take(stream.MixtureStream(plan, seed=7).rows(), 500))
    assert first != ids(take(stream.MixtureStream(plan, seed=8).rows(), 500))
    assert len(first) == 500  # the stream goes on past one pass (260 samples)


@pytest.mark.parametrize("start", [0, 1, 2, 9, 131, 259, 260, 263, 777])
def test_starting_at_a_position_continues_the_same_stream(index, start):
    plan = mixture.plan(index, MixtureRecipe(sources={"synth_xray": 2, "synth_cells": 1, "synth_medqa": 1},
                                             tasks=TASKS, shuffle_window=10))
    rows = stream.MixtureStream(plan, seed=1)
    whole = ids(take(rows.rows(), start + 12))
    resumed = list(itertools.islice(rows.rows(start), 12))
    assert [i for i, _ in resumed] == list(range(start, start + 12))
    assert ids(r for _, r in resumed) == whole[start:]
    assert rows.counts_at(start) == {name: sum(1 for r in whole[:start] if r.startswith(name)) for name in ROWS}


def test_ranks_hold_disjoint_strided_parts(index):
    plan = mixture.plan(index, MixtureRecipe(sources=list(ROWS), tasks=TASKS))
    rows = stream.MixtureStream(plan, seed=5)
    whole = ids(take(rows.rows(), 90))
    parts = [ids(take(rows.rows(rank=r, world=3), 30)) for r in range(3)]
    assert [whole[r::3] for r in range(3)] == parts
    assert ids(take(rows.rows(4, rank=1, world=3), 5)) == whole[13::3][:5]  # part index 4 = position 13


def test_trainer_dataset_decodes_images_splits_by_rank_and_resumes(index, tmp_path):
    import json

    from PIL import Image

    from medmo_pipeline.training.examples import sft_example, sft_features

    plan = mixture.plan(index, MixtureRecipe(sources=list(ROWS), tasks=TASKS))
    rows = stream.MixtureStream(plan, seed=5)
    whole = ids(take(rows.rows(), 20))
    with_images = {r["id"] for r in take(rows.rows(), 20) if r["images"]}
    kept = [(i, row) for i, row in enumerate(take(rows.rows(rank=1, world=2), 10)) if row["images"]]

    def example(row):  # drops text-only rows, as a prompt filter would
        return sft_example(row) if row["images"] else None

    positions, log = stream.PositionLog(), tmp_path / "samples.jsonl"
    dataset = stream.trainer_dataset(rows, features=sft_features(), to_example=example, world=2,
                                     positions=positions, sample_log=log)
    assert dataset.n_shards == 2
    part = list(itertools.islice(iter(dataset.shard(num_shards=2, index=1)), len(kept)))
    assert all(isinstance(image, Image.Image) for item in part for image in item["images"])
    assert [item["messages"][0]["content"] for item in part] == [r["messages"][0]["content"] for _, r in kept]
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [entry["id"] for entry in logged] == [r["id"] for _, r in kept] and {e["part"] for e in logged} == {1}
    assert [entry["id"] for entry in logged] == [i for i in whole[1::2] if i in with_images]
    # Where part 1 stands after its first 3 examples: the stream index after the third kept row.
    assert positions.next_index(1, 3, (0, 0)) == kept[2][0] + 1
    resumed = stream.trainer_dataset(rows, features=sft_features(), to_example=example, world=2,
                                     starts={1: (3, kept[2][0] + 1)})
    again = list(itertools.islice(iter(resumed.shard(num_shards=2, index=1)), len(kept) - 3))
    assert [item["messages"] for item in again] == [item["messages"] for item in part[3:]]


def test_a_mixture_that_selects_nothing_or_names_an_unknown_source_is_an_error(index):
    with pytest.raises(ValueError, match="selects no train rows"):
        mixture.plan(index, MixtureRecipe(sources=["synth_medqa"], tasks=["grounding"]))
    with pytest.raises(ValueError, match="'synth_ct' is not in the corpus"):
        mixture.plan(index, MixtureRecipe(sources=["synth_ct"], tasks=TASKS))


def test_stage_plan_reuses_the_indexed_plan_only_for_the_same_mixture(index):
    from medmo_pipeline.training import streamed

    recipe = MixtureRecipe(sources=list(ROWS), tasks=TASKS)
    stored = mixture.plan(index, recipe)
    assert streamed.stage_plan({**index, "plan": {**stored, "marker": 1}}, recipe)["marker"] == 1
    other = MixtureRecipe(sources=list(ROWS), tasks=["vqa"])
    assert "marker" not in streamed.stage_plan({**index, "plan": {**stored, "marker": 1}}, other)


def test_shard_paths_stay_inside_the_plan(index):
    plan = mixture.plan(index, MixtureRecipe(sources=["synth_xray"], tasks=TASKS))
    root = Path(index["sources"]["synth_xray"]["path"])
    assert all(Path(s["path"]).parent == root for s in plan["sources"]["synth_xray"]["shards"])

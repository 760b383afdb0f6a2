"""A recipe edit marks the edited stage stale with a code-version cause, and nothing upstream.

The small graph is materialized in-process into a real (temporary) Dagster instance; then definitions
are built from a recipe whose ``stages.stage2.optim.max_steps`` changed, and stale status is read with
``CachingStaleStatusResolver``: the resolver behind the UI's and GraphQL's ``staleStatus`` /
``staleCauses``, so what it says is what a person sees.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.conftest import small_recipe_data, write_recipe

pytestmark = pytest.mark.e2e

UPSTREAM = ["corpus_shards", "base_model", "base_model_eval_table", "stage1_checkpoint",
            "stage1_checkpoint_eval_table"]
EDITED = "stage2_checkpoint"
DOWNSTREAM = ["stage2_checkpoint_eval_table", "stage3_checkpoint", "stage3_checkpoint_eval_table", "rl_policy",
              "rl_policy_eval_table", "stage_ablation"]


def _recipe_data() -> dict:
    # Staleness needs materializations, not learning: the fewest steps and samples that run every job.
    data = small_recipe_data()
    for stage in data["stages"].values():
        stage["optim"]["max_steps"] = 2
    data["evaluation"]["max_samples_per_task"] = 3
    data["evaluation"]["bootstrap_resamples"] = 20
    return data


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    import dagster as dg
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe

    tmp = tmp_path_factory.mktemp("staleness")
    data = _recipe_data()
    original = write_recipe(tmp / "small.yaml", data)
    edited_data = copy.deepcopy(data)
    edited_data["stages"]["stage2"]["optim"]["max_steps"] += 1
    edited = write_recipe(tmp / "edited.yaml", edited_data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(tmp / "home"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MEDMO_RECIPE", raising=False)
        defs = build_definitions(load_recipe(original), original)
        (tmp / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp / "dagster")) as instance:
            result = dg.materialize(list(defs.assets), resources=defs.resources, instance=instance)
            assert result.success

            def resolver(recipe_path: Path) -> CachingStaleStatusResolver:
                asset_graph = build_definitions(load_recipe(recipe_path), recipe_path).resolve_asset_graph()
                return CachingStaleStatusResolver(instance, asset_graph, LoadingContextForTest(instance))

            yield {"instance": instance, "before": resolver(original), "after": resolver(edited),
                   "keys": [k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()]}


def _status(resolver, name: str) -> str:
    import dagster as dg

    return resolver.get_status(dg.AssetKey(name)).value


def _root_causes(resolver, name: str) -> set[tuple[str, str, str]]:
    import dagster as dg

    return {(c.key.asset_key.to_user_string(), c.category.value, c.reason)
            for c in resolver.get_stale_root_causes(dg.AssetKey(name))}


def test_the_graph_under_test_is_the_whole_graph(graph):
    assert sorted(graph["keys"]) == sorted([*UPSTREAM, EDITED, *DOWNSTREAM])


def test_with_the_recipe_unchanged_everything_is_fresh(graph):
    assert {name: _status(graph["before"], name) for name in graph["keys"]} == {
        name: "FRESH" for name in graph["keys"]}


def test_the_edited_stage_is_stale_with_a_code_version_cause(graph):
    assert _status(graph["after"], EDITED) == "STALE"
    assert (EDITED, "CODE", "has a new code version") in _root_causes(graph["after"], EDITED)


def test_nothing_upstream_of_the_edited_stage_is_stale(graph):
    assert {name: _status(graph["after"], name) for name in UPSTREAM} == {name: "FRESH" for name in UPSTREAM}
    assert all(not _root_causes(graph["after"], name) for name in UPSTREAM)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "Dagster 1.13 does not propagate staleness: a downstream asset is stale only when its own code version "
    "or a direct input's data version changed. Each asset's code version is its own recipe section's hash "
    "(assets/definitions.py), so a stage2 edit leaves stage3, rl_policy, the eval tables and the ablation "
    "FRESH until stage2 is re-materialized. Chaining each asset's code version with its upstream code "
    "versions would make this pass."))
def test_everything_downstream_of_the_edited_stage_is_stale_with_a_code_version_cause(graph):
    statuses = {name: _status(graph["after"], name) for name in DOWNSTREAM}
    assert statuses == {name: "STALE" for name in DOWNSTREAM}
    for name in DOWNSTREAM:
        assert any(category == "CODE" for _, category, _ in _root_causes(graph["after"], name)), name

"""A recipe edit marks the edited stage and everything downstream stale with a code-version cause, and
nothing upstream.

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

UPSTREAM = ["corpus_shards", "stage1_mixture", "stage2_mixture", "stage3_mixture", "rl_mixture", "base_model",
            "base_model_eval_table", "stage1_checkpoint", "stage1_checkpoint_eval_table"]
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


LOCAL_SOURCE = "vqa_rad"  # a registry dataset in its real on-disk format, beside the synthetic sources


def _local_source(data_root: Path) -> Path:
    from medmo_pipeline.data.registry import load_registry
    from tests.fixtures_formats import build_fixture

    entry = load_registry().get(LOCAL_SOURCE)
    directory = data_root / entry.origin.local_dir
    build_fixture(entry.adapters[0].family, directory, entry.adapters[0].options)
    return directory / entry.adapters[0].options["file"]


def _statuses(resolver, names) -> dict:
    return {name: (_status(resolver, name), _root_causes(resolver, name)) for name in names}


@pytest.fixture(scope="module")
def graph(tmp_path_factory, warm_job_host):
    """Materialize the small graph (with one local registry source), then record stale status after a
    recipe edit, then change the local source's file and let the sensor and automation react."""
    import dagster as dg
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._core.loader import LoadingContextForTest

    from assets.automation import changed_sources_result
    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.launch.warm_host import SOCKET_ENV

    tmp = tmp_path_factory.mktemp("staleness")
    source_file = _local_source(tmp / "data")
    data = _recipe_data()
    data["corpus"]["registry"] = {"data_root": str(tmp / "data"), "sources": [LOCAL_SOURCE]}
    data["stages"]["stage1"]["mixture"]["sources"][LOCAL_SOURCE] = 1
    original = write_recipe(tmp / "small.yaml", data)
    edited_data = copy.deepcopy(data)
    edited_data["stages"]["stage2"]["optim"]["max_steps"] += 1
    edited = write_recipe(tmp / "edited.yaml", edited_data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(tmp / "home"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MEDMO_RECIPE", raising=False)
        mp.setenv(SOCKET_ENV, warm_job_host)  # jobs start as forks: staleness is about versions, not start-up
        recipe = load_recipe(original)
        defs = build_definitions(recipe, original)
        assets = list(defs.assets)
        corpus = dg.AssetKey("corpus_shards")
        (tmp / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(tmp / "dagster")) as instance:
            def run(selection, partition=None):
                result = dg.materialize(assets, selection=selection, partition_key=partition,
                                        resources=defs.resources, instance=instance)
                assert result.success
                return result

            def resolver(recipe_path: Path) -> CachingStaleStatusResolver:
                asset_graph = build_definitions(load_recipe(recipe_path), recipe_path).resolve_asset_graph()
                return CachingStaleStatusResolver(instance, asset_graph, LoadingContextForTest(instance))

            first_tick = changed_sources_result(instance, recipe, None)
            for partition in recipe.corpus.source_names():
                run([dg.AssetKey("corpus_sources"), corpus], partition)
            run(dg.AssetSelection.all() - dg.AssetSelection.assets(corpus, "corpus_sources"), "synthetic_heldout")
            keys = [k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()
                    if k != dg.AssetKey("corpus_sources")]
            recorded = {"keys": keys, "first_tick": first_tick,
                        "before": _statuses(resolver(original), keys), "after": _statuses(resolver(edited), keys)}

            # A source's file changes: the sensor observes it and asks for that partition only.
            def counts():
                return {p: len(instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=corpus, asset_partitions=[p]), limit=100).records)
                    for p in recipe.corpus.source_names()}

            recorded["counts_before"] = counts()
            baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
            quiet_tick = changed_sources_result(instance, recipe, first_tick.cursor)
            edited_text = source_file.read_text().replace("Left lung", "Right lung")
            assert edited_text != source_file.read_text()  # a change of content: a touch alone is no new data
            source_file.write_text(edited_text)
            tick = changed_sources_result(instance, recipe, quiet_tick.cursor)
            for event in tick.asset_events:
                instance.report_runless_asset_event(event)
            recorded.update(quiet_tick=quiet_tick, tick=tick,
                            source_stale=_statuses(resolver(original), ["corpus_shards"]))
            for request in tick.run_requests:
                run([dg.AssetKey("corpus_sources"), *request.asset_selection], request.partition_key)
            recorded["counts_after"] = counts()
            # Declared automation: mixtures (cheap) refresh by themselves; checkpoints wait for a person.
            automation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=baseline.cursor)
            requested = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
                         if automation.get_num_requested(key)}
            recorded["baseline_requested"] = baseline.total_requested
            recorded["automation_requested"] = requested
            mixtures = [dg.AssetKey(name) for name in requested if name.endswith("_mixture")]
            if mixtures:
                run(mixtures)  # unpartitioned
            recorded["after_source_change"] = _statuses(resolver(original), keys)
            yield recorded


def _partitions(resolver, key):
    partitions_def = resolver.asset_graph.get(key).partitions_def
    return partitions_def.get_partition_keys() if partitions_def else None


def _status(resolver, name: str):
    """Stale status of an asset; of each partition (a dict) for a partitioned asset."""
    import dagster as dg

    key = dg.AssetKey(name)
    partitions = _partitions(resolver, key)
    if partitions is None:
        return resolver.get_status(key).value
    return {p: resolver.get_status(key, p).value for p in partitions}


def _root_causes(resolver, name: str) -> set[tuple[str, str, str]]:
    """Root causes of staleness (of every partition, for a partitioned asset)."""
    import dagster as dg

    key = dg.AssetKey(name)
    causes = set()
    for partition in _partitions(resolver, key) or [None]:
        causes |= {(c.key.asset_key.to_user_string(), c.category.value, c.reason)
                   for c in resolver.get_stale_root_causes(key, partition)}
    return causes


def _all(status, value: str) -> bool:
    return all(v == value for v in status.values()) if isinstance(status, dict) else status == value


def test_the_graph_under_test_is_the_whole_graph(graph):
    assert sorted(graph["keys"]) == sorted([*UPSTREAM, EDITED, *DOWNSTREAM])


def test_with_the_recipe_unchanged_everything_is_fresh(graph):
    assert {name: _all(status, "FRESH") for name, (status, _) in graph["before"].items()} == {
        name: True for name in graph["keys"]}


def test_the_edited_stage_is_stale_with_a_code_version_cause(graph):
    status, causes = graph["after"][EDITED]
    assert status == "STALE"
    assert (EDITED, "CODE", "has a new code version") in causes


def test_nothing_upstream_of_the_edited_stage_is_stale(graph):
    assert {name: _all(graph["after"][name][0], "FRESH") for name in UPSTREAM} == {name: True for name in UPSTREAM}
    assert all(not graph["after"][name][1] for name in UPSTREAM)


def test_everything_downstream_of_the_edited_stage_is_stale_with_a_code_version_cause(graph):
    assert {name: _all(graph["after"][name][0], "STALE") for name in DOWNSTREAM} == {name: True for name in DOWNSTREAM}
    for name in DOWNSTREAM:
        assert any(category == "CODE" for _, category, _ in graph["after"][name][1]), name


# ------------------------------------------------------------------------------------ a source changes


def test_the_sensor_is_quiet_while_no_source_changes(graph):
    assert not graph["first_tick"].run_requests  # nothing curated yet: missing is for a person to launch
    assert len(graph["first_tick"].asset_events) == 4  # every source observed once
    assert not graph["quiet_tick"].run_requests and not graph["quiet_tick"].asset_events


def test_a_changed_source_file_is_observed_and_only_its_partition_is_requested(graph):
    tick = graph["tick"]
    assert [request.partition_key for request in tick.run_requests] == [LOCAL_SOURCE]
    assert [event.partition for event in tick.asset_events] == [LOCAL_SOURCE]
    status = graph["source_stale"]["corpus_shards"][0]
    assert status[LOCAL_SOURCE] == "STALE"
    assert {p: s for p, s in status.items() if p != LOCAL_SOURCE} == {p: "FRESH" for p in status if p != LOCAL_SOURCE}


def test_only_the_changed_partition_was_re_curated(graph):
    before, after = graph["counts_before"], graph["counts_after"]
    assert after[LOCAL_SOURCE] == before[LOCAL_SOURCE] + 1
    assert {p: n for p, n in after.items() if p != LOCAL_SOURCE} == {p: n for p, n in before.items() if p != LOCAL_SOURCE}


def test_automation_refreshes_the_mixtures_and_evaluations_but_never_trains(graph):
    assert graph["baseline_requested"] == 0  # an up-to-date graph asks for nothing
    requested = graph["automation_requested"]
    assert {"stage1_mixture", "base_model_eval_table"} <= requested
    assert not {name for name in requested if name.endswith("_checkpoint") or name == "rl_policy"}


def test_the_checkpoint_trained_on_the_changed_source_shows_as_stale(graph):
    statuses = graph["after_source_change"]
    assert statuses["stage1_checkpoint"][0] == "STALE"
    assert any(category == "DATA" for _, category, _ in statuses["stage1_checkpoint"][1])
    # stage 2's mixture does not read the changed source: same data version, nothing to re-train there.
    assert statuses["stage2_mixture"][0] == "FRESH"

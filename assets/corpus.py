"""The curation side of the graph: sources -> ``corpus_shards`` (one partition per source) -> mixtures.

- ``corpus_sources``: an observable source asset; observing it records each source's cheap
  fingerprint (``medmo_pipeline.data.sources.fingerprint``) as that partition's data version, so a
  changed source shows its ``corpus_shards`` partition as stale.
- ``corpus_shards``: partitioned by source; each partition runs the corpus job for one source and
  reports five blocking checks (schema, quarantine rate, contamination, manifest counts, every
  input row accounted for).
- ``<stage>_mixture``: the sources a stage reads, with their data versions and the stage's mixture
  recipe, as a corpus index file. Cheap, so they refresh on their own when a partition changes; a
  mixture's data version changes only when one of *its* sources changed.

The sensor that re-curates a changed source is in ``assets.automation``.
"""


import dagster as dg

from assets.keys import CORPUS, CORPUS_CHECKS, SOURCES, mixture_key
from assets.upstream import data_version, required_materialization
from medmo_pipeline import home
from medmo_pipeline.config import Recipe, stable_hash
from resources.launcher import Launcher


def source_partitions(recipe: Recipe) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(recipe.corpus.source_names())


def current_fingerprints(recipe: Recipe, log=None) -> dict[str, str]:
    """Source -> fingerprint, for every source whose data is reachable now."""
    from medmo_pipeline.data.registry import SourceUnavailable
    from medmo_pipeline.data.sources import fingerprint

    out = {}
    for source in recipe.corpus.source_names():
        try:
            out[source] = fingerprint(recipe.corpus, source, seed=recipe.seed)["version"]
        except SourceUnavailable as error:
            if log is not None:
                log.warning(f"{source}: not observed: {error}")
    return out


def source_entries(context, sources: list[str]) -> dict[str, dict]:
    """Corpus-index entries (path, data version, revision, counts) of the newest curation of ``sources``."""
    entries = {}
    for source in sources:
        event = required_materialization(context.instance, CORPUS, source)
        meta = {k: v.value for k, v in event.metadata.items()}
        entries[source] = {"path": str(meta["path"]), "data_version": data_version(event),
                           "revision": meta["revision"], "rows": meta["rows"], "splits": meta["splits"],
                           "shards": meta["shards"]}
    return entries


def corpus_index(context, sources: list[str], mixture: dict | None = None) -> dict:
    from medmo_pipeline.data import corpus

    return corpus.write_index(home.corpus_dir(), source_entries(context, sources), mixture=mixture)


def curation_assets(recipe: Recipe, recipe_arg: list[str]) -> list:
    partitions = source_partitions(recipe)
    version = recipe.section_hash("corpus")

    @dg.observable_source_asset(
        key=SOURCES, partitions_def=partitions, group_name="curation",
        description="The datasets the corpus is curated from (synthetic generators or local copies of the "
                    "registry's datasets); an observation records each one's cheap fingerprint.",
    )
    def corpus_sources(context) -> dg.DataVersionsByPartition:
        # Materialize it together with corpus_shards: the observation then precedes the curation, and
        # the partition's provenance names the source version it was curated from.
        versions = current_fingerprints(recipe, context.log)
        if context.has_partition_key:
            versions = {k: v for k, v in versions.items() if k == context.partition_key}
        return dg.DataVersionsByPartition(versions)

    @dg.asset(
        key=CORPUS, partitions_def=partitions, deps=[SOURCES], group_name="curation",
        code_version=recipe.chained_hash("corpus"), kinds={"parquet"},
        check_specs=[dg.AssetCheckSpec(name, asset=CORPUS, description=text, blocking=True)
                     for name, text in CORPUS_CHECKS.items()],
        description="Curated shards of one source (Parquet + manifest); data version = manifest hash. "
                    "Quarantined rows and their reasons sit beside the shards.",
    )
    def corpus_shards(context: dg.AssetExecutionContext, launcher: Launcher) -> dg.MaterializeResult:
        return launcher.launch(context, "medmo_pipeline.data.build",
                               [*recipe_arg, "--source", context.partition_key, "--expect-hash", version])

    mixtures = [mixture_asset(name, recipe) for name in [*recipe.stages, "rl"]]
    return [corpus_sources, corpus_shards, *mixtures]


def mixture_asset(name: str, recipe: Recipe):
    stage = recipe.stage(name)
    declared = {"stage": name, **stage.mixture.model_dump(mode="json"), "image": stage.image.model_dump(mode="json")}

    @dg.asset(
        key=mixture_key(name), deps=[CORPUS], group_name="curation", code_version=stable_hash(declared),
        automation_condition=dg.AutomationCondition.eager(), kinds={"json"},
        description=f"What {name} trains on: sources {sorted(stage.mixture.sources)} with weights, tasks and "
                    "resolution from the recipe, pinned to each source's data version.",
    )
    def _mixture(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from medmo_pipeline.data import corpus, mixture

        entries = source_entries(context, sorted(stage.mixture.sources))
        plan = mixture.plan({"sources": entries}, stage.mixture)  # reads the split and task columns only
        index = corpus.write_index(home.corpus_dir(), entries, mixture=declared, plan=plan)
        return dg.MaterializeResult(
            metadata={"index_path": dg.MetadataValue.path(index["index_path"]),
                      "sources": dg.MetadataValue.md(corpus.markdown(index)),
                      "rows_by_source_and_task": dg.MetadataValue.md(mixture.markdown(plan)),
                      "planned_samples": dg.MetadataValue.int(plan["planned_samples"]),
                      "mixture": dg.MetadataValue.json(declared)},
            data_version=dg.DataVersion(index["data_version"]),
        )

    return _mixture

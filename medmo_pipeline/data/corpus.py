"""The curated corpus: one shard directory per source, and an index that ties them together.

Layout (docs/architecture.md, "Contracts"):
``<corpus>/<source>/<data_version>/part-NNNNN.parquet`` + ``manifest.json``,
where a source's data version is its manifest hash (one ``corpus_shards`` partition each). A corpus
index ``<corpus>/index/<hash>.json`` lists the sources a job reads (a stage mixture, or every source
for evaluation); its hash over the sources' data versions is the corpus version a checkpoint records,
next to each source's own data version and revision.
"""

from __future__ import annotations

import json
from pathlib import Path

from medmo_pipeline.atomic import write_json_atomic
from medmo_pipeline.recipe_schema import stable_hash


def source_entry(report: dict) -> dict:
    """A source's line in the corpus index, from its curation report (``sources.curate_source``)."""
    return {
        "path": report["shard_dir"],
        "data_version": report["data_version"],
        "revision": report["revision"],
        "rows": report["rows_kept"],
        "splits": report["splits"],
        "shards": report["shards"],
    }


def write_index(root: Path, sources: dict, *, mixture: dict | None = None, plan: dict | None = None) -> dict:
    """Write the index of ``sources`` (name -> ``source_entry``); a stage's index also names its mixture
    and may carry its plan (``data.mixture.plan``: counts the training job then need not read again).

    The index's data version hashes the sources' data versions (and the mixture recipe, if any), so
    the same inputs always give the same file; the plan follows from those inputs.
    """
    versions = {name: info["data_version"] for name, info in sorted(sources.items())}
    data_version = stable_hash(versions if mixture is None else {"sources": versions, "mixture": mixture}, length=64)
    index = {"data_version": data_version, "sources": dict(sorted(sources.items()))}
    if mixture is not None:
        index["mixture"] = mixture
    if plan is not None:
        index["plan"] = plan
    path = root / "index" / f"{data_version}.json"
    write_json_atomic(path, index)
    index["index_path"] = str(path)
    return index


def markdown(index: dict) -> str:
    """The index as a Markdown table, for asset metadata."""
    lines = ["| source | rows | train | eval | shards | data version |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {info['rows']} | {info['splits'].get('train', '')} | {info['splits'].get('eval', '')} "
              f"| {info['shards']} | `{info['data_version'][:12]}` |" for name, info in index["sources"].items()]
    return "\n".join(lines)


def load_index(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus index {path} does not exist; materialize corpus_shards first")
    index = json.loads(path.read_text())
    index["index_path"] = str(path)
    return index


def lineage_view(index: dict) -> dict:
    """What a checkpoint records about its corpus: the data version per source with its revision."""
    return {
        "data_version": index["data_version"],
        "index_path": index["index_path"],
        "sources": {
            name: {"data_version": info["data_version"], "revision": info["revision"]}
            for name, info in index["sources"].items()
        },
    }

"""Print an asset's latest materialization as JSON: ``python -m assets.latest_materialization
<DAGSTER_HOME> <asset key> [<partition>]``: its path, run, partition, data version and the numbers
and short texts among its metadata (its key outputs).

``medmo lineage`` and ``medmo materialize`` run this in a subprocess, so the library itself never
imports dagster.
"""

from __future__ import annotations

import json
import sys

import dagster as dg

from assets.upstream import data_version, latest_materialization, output_path

SHORT_TEXT = 120  # longer texts (tables, embedded images) stay in the UI


def key_outputs(metadata: dict) -> dict:
    """Numbers, and texts short enough for a terminal line, from a materialization's metadata."""
    out = {}
    for name, entry in metadata.items():
        value = entry.value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        if isinstance(value, str) and (len(value) > SHORT_TEXT or "\n" in value or name == "path"):
            continue
        out[name] = value
    return out


def main(dagster_home: str, key: str, partition: str | None = None) -> None:
    instance = dg.DagsterInstance.from_config(dagster_home)
    try:
        record = latest_materialization(instance, dg.AssetKey.from_user_string(key), partition)
        if record is None:
            print(json.dumps({"error": "never materialized"}))
            return
        event = record.asset_materialization
        print(json.dumps({"path": output_path(event), "run_id": record.run_id, "partition": event.partition,
                          "data_version": data_version(event) or None, "outputs": key_outputs(event.metadata)},
                         default=str))
    finally:
        instance.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""Print the path of an asset's latest materialization as JSON: ``python -m assets.latest_materialization
<DAGSTER_HOME> <asset key>``.

``medmo lineage <asset key>`` runs this in a subprocess, so the library itself never imports dagster.
"""

from __future__ import annotations

import json
import sys

import dagster as dg


def main(dagster_home: str, key: str) -> None:
    instance = dg.DagsterInstance.from_config(dagster_home)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey.from_user_string(key))
        if event is None or event.asset_materialization is None:
            print(json.dumps({"error": "never materialized"}))
            return
        meta = event.asset_materialization.metadata
        entry = meta.get("path") or meta.get("index_path")
        print(json.dumps({"path": None if entry is None else str(entry.value), "run_id": event.run_id}))
    finally:
        instance.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:3])

"""What an asset reads of its upstream assets: the newest materialization, its path and data version.

Every lookup of "the latest materialization" goes through ``latest_materialization``: the assets (a
parent checkpoint, a mixture's index, a corpus partition, an evaluation directory), the source sensor,
and ``assets.latest_materialization`` (the ``medmo lineage``/``materialize`` helper).
"""

import dagster as dg

DATA_VERSION_TAG = "dagster/data_version"
# The metadata entry that names an asset's output: a directory, or (mixtures) an index file.
PATH_ENTRIES = ("path", "index_path")


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
                           ) -> dg.EventLogRecord | None:
    """The newest materialization record of ``key`` (of one partition when given), or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None),
        limit=1).records
    return records[0] if records else None


def output_path(materialization: dg.AssetMaterialization) -> str | None:
    """The path a materialization reports, or None."""
    entry = next((materialization.metadata[name] for name in PATH_ENTRIES if name in materialization.metadata), None)
    return None if entry is None else str(entry.value)


def data_version(materialization: dg.AssetMaterialization) -> str:
    return (materialization.tags or {}).get(DATA_VERSION_TAG, "")


def required_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
                             ) -> dg.AssetMaterialization:
    """The newest materialization of ``key`` (or of one partition); a Failure that says what to
    materialize first when there is none."""
    record = latest_materialization(instance, key, partition)
    if record is None:
        what = key.to_user_string() + (f" partition {partition!r}" if partition is not None else "")
        how = f" --partition {partition}" if partition is not None else ""
        raise dg.Failure(f"{what} has not been materialized yet; materialize it first "
                         f"(medmo materialize {key.to_user_string()}{how})")
    return record.asset_materialization


def latest_output(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None) -> tuple[str, str]:
    """Path and data version of the newest materialization of an upstream asset (or partition)."""
    materialization = required_materialization(instance, key, partition)
    path = output_path(materialization)
    if path is None:
        raise dg.Failure(f"{key.to_user_string()}'s latest materialization reports no path")
    return path, data_version(materialization)

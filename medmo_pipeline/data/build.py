"""Corpus job: curate one source of the recipe's corpus into shards; report its version and checks.

    python -m medmo_pipeline.data.build --recipe embedded --source synth_xray
    python -m medmo_pipeline.data.build --recipe embedded            # every source, then an index

Dagster runs it once per ``corpus_shards`` partition (``--source``). The checks it reports are the
partition's asset checks: schema valid, quarantine rate under the recipe's threshold, no evaluation
contamination left, row counts equal to the manifest, every input row accounted for (kept,
quarantined or filtered, by reason).
"""

from __future__ import annotations

import time
from pathlib import Path

from medmo_pipeline import home
from medmo_pipeline.jobs import checked_recipe, entry_point, job_parser

# The partition's asset checks (name -> what it verifies); the Dagster layer declares them from here.
CHECKS = {
    "schema_valid": "the shards follow the sample contract's schema",
    "quarantine_rate_ok": "the share of quarantined rows is under corpus.max_quarantine_rate",
    "no_eval_contamination": "no training row shares an image with an evaluation item",
    "rows_match_manifest": "every shard's sha256 and row count match the manifest",
    "rows_accounted": "every input row is kept, quarantined or filtered (counts by reason in the metadata); the "
                      "counts by reason add up and the quarantine table holds one record per quarantined row",
    "rows_kept": "a source that read rows keeps some: a filter, split or layout choice that leaves none stops here",
}


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--source", action="append", help="source to curate (repeatable; default: all)")
    args = parser.parse_args(argv)
    recipe, code_version = checked_recipe(args, "corpus")

    from medmo_pipeline.data import corpus as corpus_index
    from medmo_pipeline.data.sources import curate_source
    from medmo_pipeline.jobs import Md, job_reporter

    names = args.source or recipe.corpus.source_names()
    with job_reporter() as reporter:
        started = time.time()
        reports = {}
        for name in names:
            reporter.log(f"{name}: curating")
            reports[name] = curate_source(recipe.corpus, name, home.corpus_dir(), seed=recipe.seed,
                                          log=reporter.log)
            reporter.log(f"{name}: {reports[name]['rows_kept']} rows kept in {reports[name]['shards']} shards "
                         f"(data version {reports[name]['data_version'][:12]})")
        if len(names) == 1:
            report = reports[names[0]]
            for check, (passed, description) in source_checks(report, recipe.corpus.max_quarantine_rate).items():
                reporter.check(check, passed, description)
            reporter.report(source_metadata(report, code_version, started), data_version=report["data_version"])
            return
        index = corpus_index.write_index(home.corpus_dir(), {n: corpus_index.source_entry(r) for n, r in reports.items()})
        reporter.report({"index_path": Path(index["index_path"]), "sources": Md(corpus_index.markdown(index)),
                         "recipe_hash": code_version, "wall_seconds": round(time.time() - started, 2)},
                        data_version=index["data_version"])


def source_checks(report: dict, max_quarantine_rate: float) -> dict[str, tuple[bool, str]]:
    """The partition's asset checks, from the curation report and the published shards."""
    from medmo_pipeline.data import shards
    from medmo_pipeline.schema.rows import SAMPLE_SCHEMA

    shard_dir = Path(report["shard_dir"])
    problems = shards.verify_shards(shard_dir)
    manifest = shards.read_manifest(shard_dir)
    schema_ok = manifest.get("schema") == shards.schema_string(SAMPLE_SCHEMA)
    rate = report["quarantine_rate"]
    unaccounted = _accounting_problems(report, manifest)
    quarantine_note = (f"{report['quarantined']} of {report['rows_in']} rows quarantined ({rate:.2%}; "
                       f"threshold {max_quarantine_rate:.2%}): {report['quarantined_by_reason']}")
    return {
        "schema_valid": (schema_ok, "shards follow the sample contract's schema" if schema_ok
                         else "the manifest's schema differs from the sample contract"),
        "quarantine_rate_ok": (rate <= max_quarantine_rate, quarantine_note),
        "no_eval_contamination": (_no_contamination_left(shard_dir),
                                  f"{report['contaminated']} training rows matching evaluation items dropped"),
        "rows_match_manifest": (not problems, "; ".join(problems) or
                                f"{manifest['total_rows']} rows in {len(manifest['shards'])} shards, "
                                "sha256 and counts as listed"),
        "rows_accounted": (not unaccounted, "; ".join([
            (f"{report['rows_in']} in = {report['rows_kept']} kept + {report['quarantined']} "
             f"quarantined + {report['filtered']} filtered {report['filtered_by_reason']}"), *unaccounted])),
        "rows_kept": (report["rows_kept"] > 0 or report["rows_in"] == 0,
                      f"{report['rows_kept']} of {report['rows_in']} rows kept" + (
                          "" if report["rows_kept"] or not report["rows_in"] else
                          f": every row was quarantined {report['quarantined_by_reason']} or filtered "
                          f"{report['filtered_by_reason']}; check the entry's layout options and filters")),
    }


def _accounting_problems(report: dict, manifest: dict) -> list[str]:
    """What does not add up between the report's totals, its counts by reason, the manifest and the
    quarantine table (one record per quarantined row): the totals alone passed a count by reason
    that was wrong, or a quarantine table that lost records."""
    import pyarrow.parquet as pq

    problems = []
    if report["rows_in"] != report["rows_kept"] + report["quarantined"] + report["filtered"]:
        problems.append("the counts do not add up to rows_in")
    if manifest.get("total_rows") != report["rows_kept"]:
        problems.append(f"the manifest lists {manifest.get('total_rows')} rows, not {report['rows_kept']} kept")
    for total, by_reason in (("quarantined", "quarantined_by_reason"), ("filtered", "filtered_by_reason")):
        if sum(report[by_reason].values()) != report[total]:
            problems.append(f"{by_reason} {report[by_reason]} sums to {sum(report[by_reason].values())}, "
                            f"not {report[total]} {total}")
    path = Path(report["quarantine_path"])
    if not path.is_file():
        return [*problems, f"no quarantine table at {path}"]
    reasons = pq.read_table(path, columns=["reason"]).column("reason").value_counts().to_pylist()
    in_table = {item["values"]: item["counts"] for item in reasons}
    if in_table != {reason: count for reason, count in report["quarantined_by_reason"].items() if count}:
        problems.append(f"the quarantine table holds {dict(sorted(in_table.items()))}")
    return problems


def _no_contamination_left(shard_dir: Path) -> bool:
    """Training rows share no image hash with the evaluation split of the same shards."""
    from medmo_pipeline.data import shards

    train, held_out = set(), set()
    for row in shards.iter_rows(shard_dir, columns=["split", "images"]):
        hashes = {image["sha256"] for image in row["images"]}
        (train if row["split"] == "train" else held_out).update(hashes)
    return not (train & held_out)


def _table(counts: dict):
    from medmo_pipeline.jobs import Md

    return Md("| reason | rows |\n|---|---|\n" + "\n".join(
        f"| {reason} | {count} |" for reason, count in counts.items()) if counts else "none")


def source_metadata(report: dict, code_version: str, started: float) -> dict:
    reasons = report["quarantined_by_reason"]
    return {
        "path": Path(report["shard_dir"]),
        "source": report["source"],
        "revision": report["revision"],
        "source_fingerprint": report["fingerprint"],
        "rows": report["rows_kept"],
        "splits": report["splits"],
        "shards": report["shards"],
        "rows_in": report["rows_in"],
        "curation_parts": report.get("parts", 1),  # processes that curated it side by side
        "quarantined": report["quarantined"],
        "quarantine_rate": round(report["quarantine_rate"], 6),
        "quarantined_by_reason": _table(reasons),
        "filtered": report["filtered"],
        "filtered_by_reason": _table(report["filtered_by_reason"]),
        "quarantine_path": Path(report["quarantine_path"]),
        "contaminated": report["contaminated"],
        "decontaminated_against": report["decontaminated_against"],
        "duplicates_dropped": report["duplicates_dropped"],
        "boxes_clipped": report["boxes_clipped"],
        "extension_mismatches": report.get("extension_mismatches", 0),
        "recipe_hash": code_version,
        "wall_seconds": round(time.time() - started, 2),
    }


if __name__ == "__main__":
    main()

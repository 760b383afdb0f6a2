"""Follow a checkpoint's ``lineage.json`` back to the base model, for ``medmo lineage``.

Each checkpoint directory names its parent (path + data version) in ``lineage.json`` (docs/architecture.md,
"Contracts"). Walking those references gives the whole chain: which corpus (per source, with its
revision), which mixture, which recipe and hash, which MLflow / Dagster runs and which commit
produced every link. Everything here reads files only, so the chain can be answered months later
without the Dagster instance or the MLflow store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LINEAGE_FILE = "lineage.json"
# A parent that is not a directory this pipeline wrote (a hub id or a hub cache snapshot).
HUB_STAGE = "hub"


class LineageError(Exception):
    """The chain cannot be followed; the message says which link and why."""


def read_record(directory: Path) -> dict:
    path = Path(directory) / LINEAGE_FILE
    if not Path(directory).is_dir():
        raise LineageError(f"{directory} is not a directory")
    if not path.is_file():
        raise LineageError(f"{directory} has no {LINEAGE_FILE}: not a checkpoint or evaluation this pipeline wrote")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LineageError(f"{path} is not valid JSON: {exc}") from None


def _link(path: Path, record: dict, parent_check: dict | None) -> dict:
    recipe = record.get("recipe") or {}
    return {
        "stage": record.get("stage"),
        "path": str(path),
        "data_version": record.get("data_version"),
        "recipe": {"name": recipe.get("name"), "hash": recipe.get("hash"), "resolved": recipe.get("resolved")},
        "mlflow_run_id": record.get("mlflow_run_id"),
        "git_commit": record.get("git_commit"),
        "dagster_run_id": record.get("dagster_run_id"),
        "started": record.get("started"),
        "ended": record.get("ended"),
        "parent": record.get("parent"),
        # Does the parent on disk still hold the weights this link was trained from? A re-run of the
        # parent with the same recipe, parent and corpus replaces its directory in place.
        "parent_data_version_on_disk": None if parent_check is None else parent_check.get("data_version"),
        "parent_matches": None if parent_check is None else parent_check.get("matches"),
        "corpus": record.get("corpus"),
        "mixture": record.get("mixture"),
        "metrics": record.get("metrics") or {},
    }


def follow(start: Path | str) -> dict:
    """The chain from ``start`` (a checkpoint or an evaluation directory) back to the base model.

    Returns ``{"start", "evaluation", "chain"}``; ``chain`` is newest first, one link per checkpoint,
    ending with the base model (or with a hub reference when the base model is a hub model).
    """
    start_path = Path(start).expanduser().resolve()
    record = read_record(start_path)
    evaluation = None
    if "stage" not in record and isinstance(record.get("checkpoint"), dict):
        # An evaluation directory: report it, then follow the checkpoint it evaluated.
        evaluation = {"path": str(start_path), **{k: record.get(k) for k in
                                                  ("checkpoint", "recipe", "mlflow_run_id", "git_commit",
                                                   "data_version", "corpus")}}
        checkpoint = record["checkpoint"]
        current = Path(checkpoint.get("path") or "")
        if not current.is_dir():
            raise LineageError(f"evaluation {start_path} names checkpoint {current}, which does not exist")
        current = current.resolve()
        record = read_record(current)
    else:
        current = start_path

    chain: list[dict] = []
    seen: set[str] = set()
    while True:
        if str(current) in seen:
            raise LineageError(f"lineage loops back to {current}")
        seen.add(str(current))
        parent = record.get("parent")
        if not parent:
            chain.append(_link(current, record, None))
            break
        parent_path = Path(str(parent.get("path") or ""))
        if parent.get("stage") == HUB_STAGE:
            chain.append(_link(current, record, None))
            chain.append({"stage": HUB_STAGE, "path": str(parent_path), "data_version": parent.get("data_version"),
                          "recipe": None, "mlflow_run_id": None, "git_commit": None, "dagster_run_id": None,
                          "started": None, "ended": None, "parent": None, "parent_data_version_on_disk": None,
                          "parent_matches": None, "corpus": None, "mixture": None, "metrics": {}})
            break
        where = f"link {len(chain) + 1} ({record.get('stage')} at {current})"
        if not parent_path.is_dir():
            raise LineageError(f"chain broken at {where}: its parent {parent.get('stage')} at {parent_path} "
                               "does not exist")
        try:
            parent_record = read_record(parent_path)
        except LineageError as exc:
            raise LineageError(f"chain broken at {where}: {exc}") from None
        on_disk = parent_record.get("data_version")
        chain.append(_link(current, record, {"data_version": on_disk,
                                             "matches": on_disk == parent.get("data_version")}))
        current, record = parent_path.resolve(), parent_record
    return {"start": str(start_path), "evaluation": evaluation, "chain": chain}


# ----------------------------------------------------------------------------------------------- text


def _short(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def _rows(rows: list[list[str]], indent: str) -> list[str]:
    """Left-aligned columns."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _mixture_rows(mixture: dict | None) -> list[list[str]]:
    drawn = (mixture or {}).get("drawn") or {}
    rows = [["source", "task", "rows"]]
    for source in sorted(drawn):
        for task in sorted(drawn[source]):
            rows.append([source, task, str(drawn[source][task])])
    return rows if len(rows) > 1 else []


def format_text(document: dict) -> str:
    chain = document["chain"]
    lines = [f"Lineage of {document['start']}", f"{len(chain)} links, newest first, ending at the base model", ""]
    evaluation = document.get("evaluation")
    if evaluation:
        recipe = evaluation.get("recipe") or {}
        lines += ["evaluation", *_rows([
            ["path", evaluation["path"]],
            ["data version", _short(evaluation.get("data_version"))],
            ["recipe", f"{_short(recipe.get('name'))}  hash {_short(recipe.get('hash'))}"],
            ["mlflow run", _short(evaluation.get("mlflow_run_id"))],
            ["git commit", _short(evaluation.get("git_commit"))],
        ], "  "), ""]
    for number, link in enumerate(chain, 1):
        recipe = link.get("recipe") or {}
        fields = [
            ["path", link["path"]],
            ["data version", _short(link.get("data_version"))],
        ]
        if link["stage"] != HUB_STAGE:
            fields += [
                ["recipe", f"{_short(recipe.get('name'))}  hash {_short(recipe.get('hash'))}"],
                ["mlflow run", _short(link.get("mlflow_run_id"))],
                ["git commit", _short(link.get("git_commit"))],
                ["dagster run", _short(link.get("dagster_run_id"))],
                ["started", _short(link.get("started"))],
                ["ended", _short(link.get("ended"))],
            ]
        parent = link.get("parent")
        if parent:
            note = ""
            if link.get("parent_matches") is False:
                note = f"  MISMATCH: the parent directory now holds {link.get('parent_data_version_on_disk')}"
            version = _short(parent.get("data_version"))
            fields.append(["parent", f"{_short(parent.get('stage'))}  data version {version}{note}"])
        corpus = link.get("corpus")
        if corpus:
            fields.append(["corpus", f"data version {_short(corpus.get('data_version'))}"])
            fields.append(["corpus index", _short(corpus.get("index_path"))])
        metrics = link.get("metrics") or {}
        if metrics:
            fields.append(["metrics", "  ".join(f"{k}={v}" for k, v in metrics.items())])
        lines.append(f"[{number}] {link['stage']}")
        lines += _rows(fields, "    ")
        if corpus and corpus.get("sources"):
            lines.append("    corpus sources")
            lines += _rows([["source", "data version", "revision"]] + [
                [name, _short(info.get("data_version")), _short(info.get("revision"))]
                for name, info in sorted(corpus["sources"].items())
            ], "      ")
        mixture_rows = _mixture_rows(link.get("mixture"))
        if mixture_rows:
            lines.append("    mixture drawn")
            lines += _rows(mixture_rows, "      ")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_json(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"

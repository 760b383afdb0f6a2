"""What makes a loaded benchmark row unusable, and which rows a benchmark's protocol leaves out.

A benchmark is loaded completely or not at all (``data.benchmarks.loading``): every row is checked
here before any model runs. :func:`row_problem` says why a row cannot be evaluated (a missing
image, a gold answer or reference that cannot be read); :func:`exclusion` says which rows the
benchmark's own evaluation protocol excludes (studies with neither findings nor impression), which
are filtered and counted, never scored.
"""

from __future__ import annotations

from collections.abc import Iterable

from medmo_pipeline.data.adapters.choices import LETTERS
from medmo_pipeline.data.benchmarks.gold import QUESTION_TASKS, unreadable_grounding_reason
from medmo_pipeline.schema.rows import reference_text

FREE_TEXT_TASKS = ("report", "caption", "instruction")
SHOWN = 5


class BenchmarkLoadError(ValueError):
    """A benchmark whose files cannot be evaluated as they are; the message names the benchmark,
    the file and the rows."""


def missing_image(row: dict) -> str | None:
    """Why a row's image cannot be read; None when every image has bytes."""
    missing = [image.get("path") or "?" for image in row["images"] if not image.get("bytes")]
    return f"image file {missing[0]!r} is missing" if missing else None


def exclusion(row: dict, reasons: Iterable[str]) -> str | None:
    """The first of ``reasons`` (the registry's ``exclude``) that applies to ``row``; None if none."""
    for reason in reasons:
        if reason == "empty_reference" and row["task"] in FREE_TEXT_TASKS and not reference_text(row).strip():
            return reason
    return None


def unreadable_gold(row: dict) -> str | None:
    """Why a row has no gold label to score against; None when it has one."""
    if row["task"] in QUESTION_TASKS:
        answer = row["answer"].strip()
        if not answer:
            return "no gold answer (empty answer field)"
        closed = row["task"] == "vqa" and answer.lower() in ("yes", "no")  # scored as closed, not by letter
        if row["choices"] and not closed and (answer not in LETTERS or LETTERS.index(answer) >= len(row["choices"])):
            return f"gold answer {answer!r} names none of its {len(row['choices'])} options"
        return None
    if row["task"] in FREE_TEXT_TASKS:
        return None if reference_text(row).strip() else "empty reference text"
    return unreadable_grounding_reason(row)


def raise_problems(benchmark: str, problems: list[tuple[str, str, str]]) -> None:
    """Raise :class:`BenchmarkLoadError` listing (file, where in it, reason) problems, if any."""
    if not problems:
        return
    listed = "; ".join(f"{file}, {where}: {reason}" for file, where, reason in problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    raise BenchmarkLoadError(
        f"benchmark {benchmark!r}: {len(problems)} row(s) cannot be evaluated ({listed}{more}). Nothing was "
        "evaluated: fix these rows or files (a partial download? images not unzipped where the registry says?)")

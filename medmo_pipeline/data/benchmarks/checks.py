"""What makes a loaded benchmark row unusable, and which rows a benchmark's protocol leaves out.

A benchmark is loaded completely or not at all (``data.benchmarks.loading``): every row is checked
here before any model runs. :func:`row_problem` says why a row cannot be evaluated (a missing
image, a gold answer or reference that cannot be read); :func:`exclusion` says which rows the
benchmark's own evaluation protocol excludes (studies with neither findings nor impression), which
are filtered and counted, never scored.
"""

from __future__ import annotations

from collections.abc import Iterable

from medmo_pipeline.answers import normalize_text
from medmo_pipeline.data.adapters.choices import LETTERS, spoken
from medmo_pipeline.data.adapters.common import shown
from medmo_pipeline.data.benchmarks.gold import QUESTION_TASKS, unreadable_grounding_reason, yes_no_gold
from medmo_pipeline.data.image_limits import ImageError, limits_in_force
from medmo_pipeline.data.images import inspect_image
from medmo_pipeline.schema.rows import reference_text

FREE_TEXT_TASKS = ("report", "caption", "instruction")
SHOWN = 5


class BenchmarkLoadError(ValueError):
    """A benchmark whose files cannot be evaluated as they are; the message names the benchmark,
    the file and the rows."""


def missing_image(row: dict, *, needs_image: bool = False) -> str | None:
    """Why a row's image cannot be read; None when every image has bytes that the image check
    (curation's ``inspect_image``) accepts: bytes that are no image would cost the row at evaluation.
    ``needs_image``: the benchmark's rows are asked about an image (its modality is not text), so a
    row naming none (an empty image field) would be asked without it and scored all the same."""
    if needs_image and not row["images"]:
        return ("the record names no image (its image field is empty): it would be asked without the image "
                "it is about")
    missing = [image.get("path") or "?" for image in row["images"] if not image.get("bytes")]
    if missing:
        return f"image file {missing[0]!r} is missing"
    for image in row["images"]:
        try:
            inspect_image(image["bytes"], limits_in_force())
        except ImageError as error:
            return f"image {image.get('path') or '?'!r} cannot be read ({error.reason}: {error.detail})"
    return None


def duplicate_id(row: dict, seen: dict[str, str], where: str) -> str | None:
    """Why a row's id repeats an earlier row's (scores and per-sample predictions are kept by id);
    records ``where`` it was first seen."""
    first = seen.setdefault(row["id"], where)
    return None if first == where else f"id {row['id']!r} is also the id of {first}"


def exclusion(row: dict, reasons: Iterable[str]) -> str | None:
    """The first of ``reasons`` (the registry's ``exclude``) that applies to ``row``; None if none."""
    for reason in reasons:
        if reason == "empty_reference" and row["task"] in FREE_TEXT_TASKS and not reference_text(row).strip():
            return reason
    return None


def unreadable_gold(row: dict, *, choices_only: bool = False) -> str | None:
    """Why a row has no gold label to score against; None when it has one. ``choices_only``: the
    benchmark's questions are all multiple choice (its gold an option letter), so a question
    without options would be scored as an open one."""
    if row["task"] in QUESTION_TASKS:
        answer = row["answer"].strip()
        if not answer:  # a gold naming no option is the adapter's malformed_record, naming its value
            return "no gold answer (its answer field is empty)"
        if choices_only and not row["choices"]:
            return f"gold answer {answer!r} names no option its question lists (the benchmark is multiple choice)"
        closed = row["task"] == "vqa" and yes_no_gold(answer)  # scored as closed, not by letter
        if row["choices"] and not closed and (answer not in LETTERS or LETTERS.index(answer) >= len(row["choices"])):
            return f"gold answer {answer!r} names none of its {len(row['choices'])} options"
        if row["choices"] and not closed:
            return _gold_option_problem(answer, row["choices"])
        if not row["choices"] and not normalize_text(answer):  # token metrics would have nothing to match
            return f"gold answer {answer!r} holds no word to score against"
        return None
    if row["task"] in FREE_TEXT_TASKS:
        return None if reference_text(row).strip() else "empty reference text"
    return unreadable_grounding_reason(row)


def _gold_option_problem(letter: str, choices: list[str]) -> str | None:
    """Why the option a gold letter names cannot be scored as that option alone: it is empty (the
    model was shown "B. " and nothing), or another option reads the same (``spoken``: case, runs of
    spaces and a final period aside), so a model naming that text, or the other letter, chose the
    gold's answer and was scored wrong. None when the option is one of a kind.

    >>> _gold_option_problem("A", ["Aspirin", "aspirin.", "Heparin"])
    "gold answer 'A' is ambiguous: option A 'Aspirin' reads as option B 'aspirin.'"
    """
    position = LETTERS.index(letter)
    picked = choices[position]
    if not spoken(picked):
        return f"gold answer {letter!r} names option {letter}, which is empty"
    same = [f"{LETTERS[i]} {shown(choice, 40)}" for i, choice in enumerate(choices)
            if i != position and spoken(choice) == spoken(picked)]
    if same:
        return f"gold answer {letter!r} is ambiguous: option {letter} {shown(picked, 40)} reads as option " \
            f"{', '.join(same)}"
    return None


def raise_problems(benchmark: str, problems: list[tuple[str, str, str]]) -> None:
    """Raise :class:`BenchmarkLoadError` listing (file, where in it, reason) problems, if any."""
    if not problems:
        return
    listed = "; ".join(f"{file}, {where}: {reason}" for file, where, reason in problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    raise BenchmarkLoadError(
        f"benchmark {benchmark!r}: {len(problems)} row(s) cannot be evaluated ({listed}{more}). Nothing was "
        "evaluated: fix these rows or files (a partial download? images not unzipped where the registry says?)")

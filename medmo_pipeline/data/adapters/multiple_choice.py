"""Text multiple choice: MedQA (``question, options{A..E}, answer_idx``), MedMCQA (``question,
opa..opd, cop`` as 0-based index), PubMedQA (``question, context, final_decision`` over the fixed
options yes/no/maybe), Medical-Meadow-MedQA. The answer becomes the option letter; an answer that
names no option (a ``cop`` of 4, an ``answer_idx`` of F), or given as text matches two, is the
record's ``malformed_record`` naming the field and its value (``choices.gold_letter``). Options kept
one a column (``opa..opd``) are those the record fills, the empty last ones dropped; an empty one before
a filled one is ``malformed_record`` (``choices.column_options``). A question that already lists its
options at its end (MedXpertQA-Text's ``Answer Choices: (A) ...``) shows them once
(``choices.lettered_question``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowError

from .choices import AnswerFormat, column_options, gold_letter, lettered_question, unprefixed
from .common import RecordOptions, guarded, limited, make_row, read_records, rows_only, text, turn


class Options(RecordOptions):
    modality: str = "text"
    question_field: str = "question"
    context_field: str = ""
    options_field: str = ""  # a dict {letter: text} or a list of texts
    option_fields: list[str] = []  # one column per option
    fixed_choices: list[str] = []  # the same options for every record (PubMedQA: yes/no/maybe)
    answer_field: str = "answer"
    answer_format: AnswerFormat = "letter"
    index_base: int = 0

    def named_columns(self) -> list[str]:
        return [*super().named_columns(), self.question_field, self.context_field, self.options_field,
                *self.option_fields, self.answer_field]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    def convert(index: int, record: dict) -> list[dict]:
        choices, keys = _choices(record, options)
        # a gold naming no option, or two, is this record's malformed_record naming the value
        letter = gold_letter(text(record.get(options.answer_field)), choices, options.answer_format,
                             index_base=options.index_base, keys=keys, what=options.answer_field)
        question = text(record.get(options.question_field))
        if not question:  # a context and options ask nothing without it
            raise RowError("missing_question", f"{options.question_field} is empty")
        context = _context(record.get(options.context_field)) if options.context_field else ""
        prompt = lettered_question(f"{context}\n\n{question}" if context else question, choices)
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, "text_qa", options, turn(prompt, letter), choices=choices)]

    yield from guarded(limited(read_records(root, options), options), options.file, convert)


def _choices(record: dict, options: Options) -> tuple[list[str], list | None]:
    """The option texts in order, and the publisher's keys of them when the options are a dict: the
    options are lettered anew from A, and the answer names a key ("C" of options keyed B..E)."""
    if options.fixed_choices:
        return list(options.fixed_choices), None
    if options.option_fields:
        return unprefixed(column_options(record, options.option_fields)), None  # trailing empty columns dropped
    value = record.get(options.options_field)
    if isinstance(value, str) and value.strip().startswith(("{", "[")):  # a JSON column of a CSV export
        value = json.loads(value)
    if isinstance(value, dict):
        keys = sorted(value, key=_option_order)
        return unprefixed([text(value[key]) for key in keys]), keys
    if not isinstance(value, (list, tuple)) and value is not None:
        raise RowError("malformed_record", f"{options.options_field} is {type(value).__name__}")
    return unprefixed([text(item) for item in value or []]), None


def _option_order(key) -> tuple:
    """Options keyed "A".."E" in letter order, keyed "1".."12" in number order (not "1", "10", "2")."""
    spelled = str(key).strip()
    return (0, int(spelled), "") if spelled.isascii() and spelled.isdigit() else (1, 0, spelled)


def _context(value) -> str:
    """PubMedQA stores contexts as {"contexts": [...]}; others as plain text."""
    if isinstance(value, dict):
        value = value.get("contexts", [])
    return " ".join(text(part) for part in value) if isinstance(value, list) else text(value)


iter_samples = rows_only(iter_outcomes)

"""VQA triplets (image, question, answer), optionally with an answer type and lettered options.

VQA-RAD (``image_name, question, answer, answer_type``), SLAKE (``img_name, question, answer,
answer_type, q_lang``), PathVQA, VQA-Med-2019 (pipe-separated ``image|question|answer``
text files, image names without extension), PMC-VQA (``Figure_path, Question, Choice A..D`` with ``Answer_label`` in v1 and a letter ``Answer``
in v2; the options carry their own "A:" prefix, removed), MIMIC-CXR-VQA, NIH-VQA.
A closed question whose answer is yes/no (in any case, with a final period: "Yes.") gets choices
``["yes", "no"]`` and the answer in lower case (the answer type has no column of its own in the
sample contract); open questions get none. Where the layout names no answer type column (PathVQA,
MIMIC-CXR-VQA, VQA-Med), a yes/no answer is closed by its words alone. With options, an answer naming none of them, or given as
text matching two, is the record's ``malformed_record`` naming the field and its value. Option
columns the record leaves empty at the end (OmniMedVQA's questions of two or three options) are no
options; an empty one before a filled one is ``malformed_record`` (``choices.column_options``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medmo_pipeline.data.outcomes import RowFiltered, RowQuarantined

from .choices import AnswerFormat, column_options, gold_letter, lettered_question, spoken, unprefixed
from .common import (
    ImageRecordOptions,
    each_record,
    make_row,
    read_records,
    record_images,
    rows_only,
    text,
    turn,
)
from .records import layout_path, located, text_lines

YES_NO = ("yes", "no")


class Options(ImageRecordOptions):
    delimiter_fields: list[str] = []  # for '|'-separated text lines: the field names, in order
    question_field: str = "question"
    answer_field: str = "answer"
    answer_type_field: str = ""
    option_fields: list[str] = []  # e.g. ["Choice A", "Choice B", ...] (PMC-VQA)
    answer_format: AnswerFormat = "text"
    language_field: str = ""
    language: str = ""  # keep only records whose language_field equals this (SLAKE: "en"); others are filtered

    def named_columns(self) -> list[str]:
        return [*super().named_columns(), self.image_field, self.question_field, self.answer_field, *self.option_fields,
                self.answer_type_field, self.language_field]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)

    def convert(index: int, record: dict) -> list:
        if options.language_field and text(record.get(options.language_field)) != options.language:
            return [RowFiltered("language", f"{options.language_field}={text(record.get(options.language_field))!r}")]
        question, answer = text(record.get(options.question_field)), answer_text(record.get(options.answer_field))
        images = record_images(root, record, options)
        choices: list[str] = []
        if options.option_fields:
            # only the options the record fills: OmniMedVQA's two-option questions leave option_C/D out
            choices = unprefixed(column_options(record, options.option_fields))
            answer = gold_letter(answer, choices, options.answer_format, what=options.answer_field)
            question = lettered_question(question, choices)
        elif spoken(answer) in YES_NO and (not options.answer_type_field
                                           or text(record.get(options.answer_type_field)).lower() == "closed"):
            # "Yes." too, as benchmarks' yes_no_gold reads it; a layout without an answer type column
            # (PathVQA's parquet: "Yes" beside "yes") has its yes/no answers closed by their words alone
            choices, answer = list(YES_NO), spoken(answer)
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, "vqa", options, turn(question, answer), images=images, choices=choices)]

    yield from each_record(_records(root, options), options, options.file, convert)


def answer_text(value) -> str:
    """An answer field as text; a list of answers (MIMIC-CXR-VQA: ``["left lung", "right lung"]``)
    joined in order, an empty list as ''."""
    if isinstance(value, (list, tuple)):
        return ", ".join(part for part in (text(item) for item in value) if part)
    return text(value)


def _records(root: Path, options: Options) -> Iterator[dict | RowQuarantined]:
    if not options.delimiter_fields:
        yield from read_records(root, options)
        return
    path = layout_path(root, options.file)
    fields = len(options.delimiter_fields)
    for item in text_lines(path, options.file):  # a line over the bound is read through, not held
        if isinstance(item, RowQuarantined):
            yield item
            continue
        number, line = item
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        values = line.split("|", fields)  # one more piece at most: a line of millions is not split further
        if len(values) != fields:
            found = f"more than {fields}" if len(values) > fields else str(len(values))
            yield RowQuarantined("malformed_record", f"{options.file} line {number}: {found} '|'-separated "
                                 f"fields, expected {fields}", options.file, f"line {number}")
            continue
        yield located(dict(zip(options.delimiter_fields, values, strict=True)), options.file, f"line {number}")


iter_samples = rows_only(iter_outcomes)

"""VQA triplets (image, question, answer), optionally with an answer type and lettered options.

VQA-RAD (``image_name, question, answer, answer_type``), SLAKE (``img_name, question, answer,
answer_type, q_lang``), PathVQA, VQA-Med-2019 (pipe-separated ``image|question|answer``
text files, image names without extension), PMC-VQA (``Figure_path, Question, Choice A..D, Answer``), MIMIC-CXR-VQA, NIH-VQA.
A closed question whose answer is yes/no gets choices ``["yes", "no"]`` (the answer type has no
column of its own in the sample contract); open questions get none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .choices import AnswerFormat, lettered_question, resolve_answer
from .common import (
    ImageRecordOptions,
    as_list,
    iter_records,
    limited,
    load_image,
    make_row,
    text,
    turn,
)

YES_NO = ("yes", "no")


class Options(ImageRecordOptions):
    delimiter_fields: list[str] = []  # for '|'-separated text lines: the field names, in order
    image_suffix: str = ""  # appended to image names stored without one (VQA-Med: "synpic41148")
    question_field: str = "question"
    answer_field: str = "answer"
    answer_type_field: str = ""
    option_fields: list[str] = []  # e.g. ["Choice A", "Choice B", ...] (PMC-VQA)
    answer_format: AnswerFormat = "text"
    language_field: str = ""
    language: str = ""  # keep only records whose language_field equals this (SLAKE: "en")


def iter_samples(root: Path, options: Options | dict) -> Iterator[dict]:
    options = Options.model_validate(options)
    for index, record in limited(_records(root, options), options):
        if options.language_field and text(record.get(options.language_field)) != options.language:
            continue
        question, answer = text(record.get(options.question_field)), text(record.get(options.answer_field))
        images = [load_image(root, f"{value}{options.image_suffix}" if isinstance(value, str) else value, options)
                  for value in as_list(record.get(options.image_field))]
        choices: list[str] = []
        if options.option_fields:
            choices = [text(record.get(field)) for field in options.option_fields]
            answer = resolve_answer(answer, choices, options.answer_format)
            question = lettered_question(question, choices)
        elif text(record.get(options.answer_type_field)).lower() == "closed" and answer.lower() in YES_NO:
            choices, answer = list(YES_NO), answer.lower()
        local_id = record.get(options.id_field) if options.id_field else index
        yield make_row(local_id, "vqa", options, turn(question, answer), images=images, choices=choices)


def _records(root: Path, options: Options) -> Iterator[dict]:
    if not options.delimiter_fields:
        yield from iter_records(root, options.file, options.format)
        return
    from medmo_pipeline.data.paths import safe_join

    with open(safe_join(root, options.file), encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield dict(zip(options.delimiter_fields, line.rstrip("\n").split("|"), strict=False))

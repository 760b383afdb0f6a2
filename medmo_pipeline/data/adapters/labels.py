"""Label tables: one row per image, one column per finding, as CheXpert ships ``train.csv``
(``Path, Sex, Age, Frontal/Lateral, AP/PA`` then 14 observations, each ``1.0`` positive, ``0.0``
negative, ``-1.0`` uncertain or blank for not mentioned; ``Path`` is relative to the folder that
holds the unzipped ``CheXpert-v1.0/``).

ChestX-ray14's ``Data_Entry_2017.csv`` keeps its labels in one cell instead (``Finding Labels``:
``Cardiomegaly|Effusion`` or ``No Finding``): ``labels_field`` and ``labels_separator`` read that
form.

Each image becomes a VQA row whose answer lists its positive findings in column order. The list
reads as all the image shows, so a finding it leaves out reads as absent: uncertain labels are
therefore named as such after the positives (``uncertain: mention``, "Lung Opacity; uncertain:
Edema"), never dropped silently (that made them negatives, the U-Zeros policy, unsaid). With
``uncertain: positive`` they count as positive (the U-Ones policy of the CheXpert paper, opt-in: the
row then states them as present). Blank (a finding the report does not mention) and 0.0 read as
absent. A row with neither a positive nor an uncertain label has
nothing to answer: it is filtered (``no_positive_label``); a label value that is not one of the four
is quarantined (``bad_number``). Names are written as words: ChestX-ray14's ``Pleural_Thickening``
is "Pleural Thickening".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field

from medmo_pipeline.data.outcomes import RowError, RowFiltered

from .common import (
    ImageRecordOptions,
    as_list,
    each_file_record,
    make_row,
    number,
    record_images,
    rows_only,
    text,
    turn,
)

CHEXPERT_LABELS = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
]
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0


class Options(ImageRecordOptions):
    image_field: str = "Path"
    id_field: str = "Path"
    label_fields: list[str] = CHEXPERT_LABELS
    labels_field: str = ""  # one cell listing the positive labels (ChestX-ray14: "Finding Labels")
    labels_separator: str = "|"
    # the names a ``labels_field`` cell may list (ChestX-ray14's 14 findings and "No Finding"): another
    # value ("58", "nan", "['Effusion']") is quarantined; [] takes any text
    label_names: list[str] = Field(default_factory=list)
    # -1.0: named as uncertain in the answer ("mention"), or counted positive ("positive", U-Ones)
    uncertain: Literal["mention", "positive"] = "mention"
    question: str = "Which findings does this chest X-ray show?"
    modality: str = "xray"

    def named_columns(self) -> list[str]:
        return [*super().named_columns(), self.image_field, *([self.labels_field] if self.labels_field
                                                              else self.label_fields)]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    wanted = {POSITIVE, UNCERTAIN} if options.uncertain == "positive" else {POSITIVE}

    def convert(index: int, record: dict) -> list:
        uncertain: list[str] = []
        if options.labels_field:
            findings = listed_labels(text(record.get(options.labels_field)), options)
        else:
            values = {field: label_value(record.get(field), field) for field in options.label_fields}
            findings = [worded(field) for field, value in values.items() if value in wanted]
            if options.uncertain == "mention":
                uncertain = [worded(field) for field, value in values.items() if value == UNCERTAIN]
        if not findings and not uncertain:
            return [RowFiltered("no_positive_label", f"{text(record.get(options.image_field))}: no positive label")]
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, "vqa", options, turn(options.question, finding_list(findings, uncertain)),
                         images=record_images(root, record, options))]

    yield from each_file_record(root, options, convert)


def finding_list(findings: list[str], uncertain: list[str]) -> str:
    """The answer: the positive findings, then the uncertain ones said to be uncertain (leaving them
    out would claim them absent)."""
    said = ", ".join(findings)
    if uncertain:
        said += ("; uncertain: " if said else "Uncertain: ") + ", ".join(uncertain)
    return said


def worded(name: str) -> str:
    """A label name as words: ``Pleural_Thickening`` (ChestX-ray14's spelling) is "Pleural Thickening"."""
    return name.replace("_", " ")  # no other change: a control code stays to be quarantined


def listed_labels(cell: str, options: Options) -> list[str]:
    """The labels a cell lists, each once, in the spelling of ``options.label_names`` written as words
    (compared without case, ``_`` as a space); RowError('malformed_record') for one that is not among them."""
    known = {worded(name).casefold(): worded(name) for name in options.label_names}
    found: dict[str, None] = {}
    for value in as_list(cell, options.labels_separator):
        if known and worded(value).casefold() not in known:
            raise RowError("malformed_record", f"{options.labels_field} lists {value[:40]!r}, not one of "
                                               f"{len(known)} labels of the layout")
        found[known.get(worded(value).casefold(), worded(value))] = None
    return list(found)


def label_value(value, field: str) -> float | None:
    """A label cell: 1.0, 0.0 or -1.0; None when blank (not mentioned); RowError otherwise."""
    if text(value) == "":
        return None
    result = number(value, field)
    if result not in (POSITIVE, NEGATIVE, UNCERTAIN):
        raise RowError("bad_number", f"{field} is {value!r}, not 1.0, 0.0, -1.0 or blank")
    return result


iter_samples = rows_only(iter_outcomes)

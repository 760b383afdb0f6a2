"""Text instruction data: Alpaca-style ``instruction, input, output`` (AlpaCare, Medical Meadow,
ChatDoctor), question/answer pairs (MedQuAD), reasoning traces (medical-o1-reasoning-SFT:
``Question, Complex_CoT, Response``; MedReason; Medical-R1-Distill) and summarisation
(MIMIC-IV-Ext-BHC: notes -> brief hospital course, with a fixed ``instruction``).

A reasoning trace is kept inside ``<think>...</think>`` before the reply; the short ``answer`` is
the reply alone. A trace or reply holding a think tag of its own is quarantined, whether or not the
record has a trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from medmo_pipeline.data.outcomes import RowError

from .common import RecordOptions, guarded, limited, make_row, read_records, rows_only, text, turn

THINK_TAGS = ("<think>", "</think>")


class Options(RecordOptions):
    modality: str = "text"
    task: Literal["instruction", "text_qa"] = "instruction"
    instruction: str = ""  # the same instruction for every record (overrides instruction_field)
    instruction_field: str = "instruction"
    input_field: str = "input"
    output_field: str = "output"
    reasoning_field: str = ""

    def named_columns(self) -> list[str]:  # the input is often absent (Alpaca-style sets without one)
        return [*super().named_columns(), "" if self.instruction else self.instruction_field, self.output_field,
                self.reasoning_field]


def iter_outcomes(root: Path, options: Options | dict) -> Iterator:
    """Rows, and the outcome (quarantined / filtered) of each record that gives none."""
    options = Options.model_validate(options)
    def convert(index: int, record: dict) -> list[dict]:
        instruction = options.instruction or text(record.get(options.instruction_field))
        extra = text(record.get(options.input_field))
        if options.instruction and not extra:  # the fixed instruction asks about the input: nothing to ask
            raise RowError("missing_field", f"{options.input_field} is empty")
        prompt = f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra
        output = text(record.get(options.output_field))
        reasoning = text(record.get(options.reasoning_field)) if options.reasoning_field else ""
        # checked with a trace or without: a reply's own <think> block would train a made-up trace
        if any(tag in part for tag in THINK_TAGS for part in (reasoning, output)):
            raise RowError("malformed_record", "a think tag inside the reasoning or the reply: the row's only "
                                               "<think> block is the one it wraps the reasoning in")
        reply = f"<think>\n{reasoning}\n</think>\n{output}" if reasoning else output
        local_id = record.get(options.id_field) if options.id_field else index
        return [make_row(local_id, options.task, options, turn(prompt, reply), answer=output)]

    yield from guarded(limited(read_records(root, options), options), options.file, convert)


iter_samples = rows_only(iter_outcomes)

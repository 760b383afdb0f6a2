"""synth_medqa: text-only multiple-choice QA over the knowledge base, plus instruction rows.

Train and eval render the SAME facts (in the same fixed rotation) with option orders drawn from
each split's own random stream: a held-out score measures recall of the facts, which is the point
of this source, and cannot come from memorising which letter a fact's answer sits under.

One row in five is an instruction row (task "instruction"), mimicking the stage-3 instruction mix:
either "Summarise the findings: <FINDINGS of an X-ray report>" -> its impression, or a knowledge-base
question to answer in a few words -> the answer text.
"""

from __future__ import annotations

import numpy as np

from . import xray
from .knowledge import FACTS, same_kind_answers
from .rows import example

MODALITY = "text"
LETTERS = "ABCD"
CYCLE = ("choice", "choice", "summarise", "choice", "choice", "choice", "choice", "short_answer")


def choice_question(rng: np.random.Generator, occurrence: int) -> dict:
    """Fact number ``occurrence`` (cycling) with its answer and three shuffled distractors."""
    fact = FACTS[occurrence % len(FACTS)]
    pool = same_kind_answers(fact)
    distractors = [pool[i] for i in rng.choice(len(pool), size=len(LETTERS) - 1, replace=False)]
    options = [fact.answer, *distractors]
    options = [options[i] for i in rng.permutation(len(options))]
    letter = LETTERS[options.index(fact.answer)]
    lines = [fact.question, *(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))]
    question = "\n".join([*lines, "Answer with the option letter."])
    return example("text_qa", MODALITY, question, letter, choices=options, reasoning=f"{fact.answer} is option {letter}")


def summarise(rng: np.random.Generator) -> dict:
    """Findings of an imagined X-ray report -> its impression."""
    zones = xray.random_zones(rng)
    return example(
        "instruction", MODALITY, f"Summarise the findings: {xray.findings(zones)}", xray.impression(zones)
    )


def short_answer(occurrence: int) -> dict:
    """A knowledge-base question answered in words rather than by letter."""
    fact = FACTS[occurrence % len(FACTS)]
    return example("instruction", MODALITY, f"Answer in a few words: {fact.question}", fact.answer)


def build(rng: np.random.Generator, kind: str, occurrence: int, size: int) -> dict:
    """The source-independent fields of one synth_medqa row of ``kind`` (``size`` is unused)."""
    if kind == "choice":
        return choice_question(rng, occurrence)
    if kind == "summarise":
        return summarise(rng)
    if kind == "short_answer":
        return short_answer(occurrence)
    raise ValueError(f"unknown synth_medqa row kind {kind!r}")

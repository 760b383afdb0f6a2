"""synth_medqa: the instruction-tuning source of stage 3 (multiple choice, instructions, short answers).

Every row asks something the earlier stages have given the model the means to answer, in a form
they never taught (an option letter, an instruction), so that stage 3 has something of its own to
learn in its few hundred steps:

- ``image_choice``: an X-ray with 0-2 lesions and "How many lesions ...?" with the options
  none / one / two / three in their natural order; stages 1-2 teach counting the lesions, stage 3
  the option letter.
- ``report_choice``: the same counting question about a findings text (after a technique line that
  varies, as in ``summarise``) instead of an image: text-only multiple choice that stage 2's reports
  taught the model to read. A knowledge-base version (facts recalled with shuffled options) stayed at
  chance in the demo's budget: a 2-layer model does not learn 40 facts from a few hundred rows.
- ``summarise`` (instruction): "Summarise the findings: <a technique line and the FINDINGS of an X-ray
  report>" -> its impression. The technique line (view, age) varies, so that train and eval rows
  rarely share a text: decontamination drops a training row whose question an evaluation row asks.
- ``impression`` (instruction): an X-ray and "Write only the impression." -> the report's impression.
- ``short_answer`` (instruction): an X-ray and "Answer in a few words: where are the lesions?" -> the
  zones, or "no lesion". Image questions are identified by their image, so the templates are shared.

Every kind keeps most of its training rows through decontamination (tests/test_synthetic.py checks it):
a kind whose rows all match evaluation questions would leave stage 3 nothing to learn from.
"""

from __future__ import annotations

import numpy as np

from . import xray
from .rows import COUNT_WORDS, box_records, example, pick

MODALITY = "text"
LETTERS = "ABCD"
CYCLE = ("image_choice", "summarise", "image_choice", "report_choice", "image_choice", "impression", "image_choice",
         "short_answer", "image_choice", "summarise")  # fmt: skip

COUNT_OPTIONS = ("none", "one", "two", "three")
COUNT_QUESTIONS = ("How many lesions are visible?", "How many lesions does this X-ray show?", "Count the lesions.")
IMPRESSION_QUESTIONS = ("Write only the impression.", "Give the impression of this X-ray.",
                        "State the impression in one line.")  # fmt: skip
WHERE_QUESTIONS = ("Answer in a few words: where are the lesions?",
                   "Answer in a few words: which zones hold a lesion?")  # fmt: skip
VIEWS = ("PA", "AP", "Portable AP")
AGES = range(18, 91)


def options_question(question: str, options: list[str] | tuple[str, ...]) -> str:
    """The question, one lettered option a line, and the answer instruction."""
    lines = [question, *(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))]
    return "\n".join([*lines, "Answer with the option letter."])


def report_choice(rng: np.random.Generator) -> dict:
    """A findings text with 0-2 lesions and the counting question with the options in order."""
    zones = xray.random_zones(rng)
    letter = LETTERS[len(zones)]
    noun = "lesion" if len(zones) == 1 else "lesions"
    question = f"{technique_line(rng)} {xray.findings(zones)}\nHow many lesions does this report describe?"
    return example("text_qa", MODALITY, options_question(question, COUNT_OPTIONS), letter,
                   choices=list(COUNT_OPTIONS), reasoning=f"{COUNT_WORDS[len(zones)]} {noun}, option {letter}")


def technique_line(rng: np.random.Generator) -> str:
    """The line a report opens with (view, age): it makes report texts rarely repeat between splits."""
    return f"{pick(rng, VIEWS)} chest X-ray, patient aged {int(rng.choice(AGES))}."


def image_choice(rng: np.random.Generator, occurrence: int, size: int) -> dict:
    """An X-ray with 0, 1 or 2 lesions (in turn, so the answers are balanced) and a counting question
    whose options are the counts in order."""
    scene = xray.draw(rng, size, occurrence % 3)
    count = len(scene.boxes)
    letter = LETTERS[count]
    noun = "lesion" if count == 1 else "lesions"
    return example("vqa", xray.MODALITY, options_question(pick(rng, COUNT_QUESTIONS), COUNT_OPTIONS), letter,
                   images=[scene.image], boxes=box_records(xray.LABEL, scene.boxes), choices=list(COUNT_OPTIONS),
                   reasoning=f"{COUNT_WORDS[count]} {noun}, option {letter}")


def impression(rng: np.random.Generator, size: int) -> dict:
    """An X-ray with 0-2 lesions -> the impression line of its report."""
    scene = xray.draw(rng, size, int(rng.integers(0, 3)))
    return example("instruction", xray.MODALITY, pick(rng, IMPRESSION_QUESTIONS), xray.impression(scene.zones),
                   images=[scene.image], boxes=box_records(xray.LABEL, scene.boxes))


def summarise(rng: np.random.Generator) -> dict:
    """Findings of an imagined X-ray report, after a technique line -> its impression."""
    zones = xray.random_zones(rng)
    return example(
        "instruction", MODALITY, f"Summarise the findings: {technique_line(rng)} {xray.findings(zones)}",
        xray.impression(zones)
    )


def short_answer(rng: np.random.Generator, size: int) -> dict:
    """An X-ray with 0-2 lesions and where its lesions are, in a few words."""
    scene = xray.draw(rng, size, int(rng.integers(0, 3)))
    zones = " and ".join(f"{z} zone" for z in dict.fromkeys(scene.zones)) or "no lesion"
    return example("instruction", xray.MODALITY, pick(rng, WHERE_QUESTIONS), zones,
                   images=[scene.image], boxes=box_records(xray.LABEL, scene.boxes))


def build(rng: np.random.Generator, kind: str, occurrence: int, size: int) -> dict:
    """The source-independent fields of one synth_medqa row of ``kind``."""
    if kind == "image_choice":
        return image_choice(rng, occurrence, size)
    if kind == "report_choice":
        return report_choice(rng)
    if kind == "summarise":
        return summarise(rng)
    if kind == "impression":
        return impression(rng, size)
    if kind == "short_answer":
        return short_answer(rng, size)
    raise ValueError(f"unknown synth_medqa row kind {kind!r}")

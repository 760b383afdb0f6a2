"""The fixed knowledge base behind synth_medqa: 40 short medical facts, grouped by kind.

Distractors for a question are the answers of other facts of the same kind, so every kind holds at
least four facts with distinct answers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    """One question with its short answer; ``kind`` groups facts whose answers can stand in as distractors."""

    kind: str
    question: str
    answer: str


_FACTS_BY_KIND = {
    "vitamin": (
        ("Which vitamin deficiency causes scurvy?", "Vitamin C"),
        ("Which vitamin deficiency causes rickets?", "Vitamin D"),
        ("Which vitamin deficiency causes night blindness?", "Vitamin A"),
        ("Which vitamin deficiency causes beriberi?", "Vitamin B1"),
        ("Which vitamin deficiency causes pellagra?", "Vitamin B3"),
        ("Which vitamin deficiency causes pernicious anaemia?", "Vitamin B12"),
    ),
    "organ": (
        ("Which organ makes insulin?", "Pancreas"),
        ("Which organ makes bile?", "Liver"),
        ("Which organ filters blood to make urine?", "Kidney"),
        ("Which organ pumps blood around the body?", "Heart"),
        ("In which organ does gas exchange take place?", "Lung"),
        ("Which organ stores bile?", "Gallbladder"),
        ("Which gland makes thyroxine?", "Thyroid"),
    ),
    "drug": (
        ("Which drug is first-line for anaphylaxis?", "Epinephrine"),
        ("Which drug reverses an opioid overdose?", "Naloxone"),
        ("Which drug treats paracetamol overdose?", "Acetylcysteine"),
        ("Which drug reverses heparin?", "Protamine"),
        ("Which drug is first-line for type 2 diabetes?", "Metformin"),
        ("Which drug reverses benzodiazepines?", "Flumazenil"),
    ),
    "pathogen": (
        ("Which organism causes malaria?", "Plasmodium"),
        ("Which organism causes syphilis?", "Treponema pallidum"),
        ("Which organism causes Lyme disease?", "Borrelia"),
        ("Which organism causes cholera?", "Vibrio cholerae"),
        ("Which virus causes AIDS?", "HIV"),
        ("Which virus causes chickenpox?", "Varicella zoster"),
    ),
    "hormone": (
        ("Which hormone lowers blood glucose?", "Insulin"),
        ("Which hormone raises blood glucose?", "Glucagon"),
        ("Which hormone is the main stress steroid?", "Cortisol"),
        ("Which hormone starts milk production?", "Prolactin"),
        ("Which hormone makes the kidney keep water?", "Vasopressin"),
        ("Which hormone raises blood calcium?", "Parathyroid hormone"),
    ),
    "imaging": (
        ("Which imaging uses a strong magnet and no radiation?", "MRI"),
        ("Which imaging uses sound waves?", "Ultrasound"),
        ("Which imaging is the first test for a broken bone?", "X-ray"),
        ("Which imaging uses a radioactive glucose tracer?", "PET"),
        ("Which imaging makes cross-sections with X-rays?", "CT"),
    ),
    "blood": (
        ("Which blood cells carry oxygen?", "Red blood cells"),
        ("Which blood cells fight infection?", "White blood cells"),
        ("Which blood cells help clotting?", "Platelets"),
        ("Which cells make antibodies?", "Plasma cells"),
    ),
}

FACTS: tuple[Fact, ...] = tuple(
    Fact(kind, question, answer) for kind, pairs in _FACTS_BY_KIND.items() for question, answer in pairs
)


def same_kind_answers(fact: Fact) -> list[str]:
    """Answers of the other facts of ``fact``'s kind: the distractor pool."""
    return [other.answer for other in FACTS if other.kind == fact.kind and other.answer != fact.answer]

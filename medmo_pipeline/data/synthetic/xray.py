"""synth_xray: chest-X-ray-like images with 0-2 bright elliptical lesions.

Image: dark background, two lighter lung fields with faint rib bands, noise, and bright
axis-aligned elliptical lesions (diameter 10-35% of the side) placed inside the lung fields,
never overlapping and never tying in reading order. Sides follow the radiological convention:
the image's left half is the patient's right lung. Each lung field is cut into upper, middle and
lower zones by thirds of its height; a lesion's zone is where its centre lies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .drawing import Box, Ellipse, encode_png, paint, place_apart, reading_order, to_uint8
from .rows import COUNT_WORDS, box_records, example, grounding_answer, pick

LABEL = "lesion"
MODALITY = "xray"
SIDES = ("right", "left")  # lung on the image's left, lung on the image's right
LEVELS = ("upper", "middle", "lower")

# One cycle of question kinds; grounding (the hardest to learn) gets the most slots.
CYCLE = ("grounding", "presence", "caption", "count", "grounding", "report", "presence", "grounding",
         "count", "caption")  # fmt: skip

QUESTIONS = {
    "caption": ("Describe the image.", "What does this image show?", "Give a short caption."),
    "presence": ("Is there a lesion?", "Is any lesion visible?", "Does the X-ray show a lesion?"),
    "count": ("How many lesions are visible?", "How many lesions are there?", "Count the lesions."),
    "grounding": ("Locate the lesion.", "Locate the lesions.", "Give the box of each lesion."),
    "report": ("Write the findings and impression.", "Write a short report.", "Report this chest X-ray."),
}


@dataclass(frozen=True)
class XrayScene:
    """A drawn image with its lesions in reading order."""

    image: dict  # image entry of the sample contract
    boxes: list[Box]
    zones: list[str]  # e.g. "right upper", one per box


def lesion_count_for(kind: str, occurrence: int, rng: np.random.Generator) -> int:
    """How many lesions a row of this question kind shows (presence alternates yes/no)."""
    if kind == "presence":
        return 0 if occurrence % 2 else int(rng.integers(1, 3))
    if kind == "grounding":
        return 1 if rng.random() < 0.6 else 2  # mostly single boxes: the easier target to learn first
    return int(rng.integers(0, 3))


def draw(rng: np.random.Generator, size: int, lesion_count: int) -> XrayScene:
    """Draw one image of side ``size`` with ``lesion_count`` lesions."""
    s = float(size)
    ys = (np.arange(size, dtype=np.float32) + 0.5)[:, None]
    image = np.broadcast_to(0.05 + 0.06 * ys / s, (size, size)).copy()
    lungs = [
        Ellipse(
            cx=s * (centre + rng.uniform(-0.02, 0.02)),
            cy=s * rng.uniform(0.50, 0.55),
            a=s * rng.uniform(0.14, 0.17),
            b=s * rng.uniform(0.31, 0.36),
        )
        for centre in (0.30, 0.70)
    ]
    lung_level = rng.uniform(0.30, 0.38)
    for lung in lungs:
        paint(image, lung, lambda r2: lung_level + 0.10 * r2)  # brighter towards the lung edge
    ribs = 0.035 * np.sin(2 * np.pi * ys / (s * rng.uniform(0.09, 0.12)) + rng.uniform(0, 2 * np.pi))
    image += ribs * (image > 0.2)

    def propose(rng: np.random.Generator, scale: float) -> Ellipse:
        lung = lungs[int(rng.integers(2))]
        angle, rho = rng.uniform(0, 2 * np.pi), 0.75 * np.sqrt(rng.random())
        width = s * scale * rng.uniform(0.10, 0.35)
        height = np.clip(width * rng.uniform(0.8, 1.25), s * scale * 0.10, s * scale * 0.35)
        return Ellipse(lung.cx + rho * lung.a * np.cos(angle), lung.cy + rho * lung.b * np.sin(angle),
                       width / 2, height / 2)  # fmt: skip

    lesions = place_apart(rng, lesion_count, propose, size, gap=0.02 * s, row_gap=0.06 * s)
    for lesion in lesions:
        peak = rng.uniform(0.85, 0.95)
        paint(image, lesion, lambda r2, peak=peak: peak - 0.08 * r2)
    image += rng.standard_normal((size, size), dtype=np.float32) * 0.025

    boxes = [lesion.box(size) for lesion in lesions]
    order = reading_order(boxes)
    return XrayScene(
        image=encode_png(to_uint8(image)),
        boxes=[boxes[i] for i in order],
        zones=[zone(lesions[i], lungs) for i in order],
    )


def zone(lesion: Ellipse, lungs: list[Ellipse]) -> str:
    """'<side> <level>' of the lung field nearest to the lesion's centre."""
    side = 0 if lesion.cx < (lungs[0].cx + lungs[1].cx) / 2 else 1
    lung = lungs[side]
    fraction = (lesion.cy - (lung.cy - lung.b)) / (2 * lung.b)
    level = LEVELS[min(2, max(0, int(fraction * 3)))]
    return f"{SIDES[side]} {level}"


def where(zones: list[str]) -> str:
    """'the right upper zone' / 'the right upper zone and the left lower zone' (repeats merged)."""
    unique = list(dict.fromkeys(zones))
    return " and ".join(f"the {z} zone" for z in unique)


def lesion_count(zones: list[str]) -> str:
    """'one lesion' / 'two lesions' (for one zone or more)."""
    return f"{COUNT_WORDS[len(zones)]} {'lesion' if len(zones) == 1 else 'lesions'}"


def caption(zones: list[str]) -> str:
    """One-sentence caption, e.g. 'Frontal chest X-ray with one lesion in the right upper zone.'"""
    if not zones:
        return "Frontal chest X-ray with no lesion."
    return f"Frontal chest X-ray with {lesion_count(zones)} in {where(zones)}."


def findings(zones: list[str]) -> str:
    """The FINDINGS section (always names the lesion count)."""
    if not zones:
        return "FINDINGS: The lungs are clear. No lesion is seen."
    return f"FINDINGS: {lesion_count(zones).capitalize()} in {where(zones)}. Other areas are clear."


def impression(zones: list[str]) -> str:
    """The IMPRESSION text (without its heading); also the gold answer of report rows."""
    if not zones:
        return "Normal chest X-ray, no lesion."
    return f"{lesion_count(zones).capitalize()}, {', '.join(f'{z} zone' for z in dict.fromkeys(zones))}."


def report(zones: list[str]) -> str:
    """Short report: 'FINDINGS: ... IMPRESSION: ...' (under 40 words)."""
    return f"{findings(zones)} IMPRESSION: {impression(zones)}"


def random_zones(rng: np.random.Generator) -> list[str]:
    """0-2 distinct zones in reading order, for text-only rows that describe an imagined X-ray."""
    cells = [(level, side) for level in range(len(LEVELS)) for side in range(len(SIDES))]
    chosen = sorted(rng.choice(len(cells), size=int(rng.integers(0, 3)), replace=False))
    return [f"{SIDES[cells[i][1]]} {LEVELS[cells[i][0]]}" for i in chosen]


def build(rng: np.random.Generator, kind: str, occurrence: int, size: int) -> dict:
    """The source-independent fields of one synth_xray row asking a ``kind`` question."""
    scene = draw(rng, size, lesion_count_for(kind, occurrence, rng))
    question = pick(rng, QUESTIONS[kind])
    common = {"images": [scene.image], "boxes": box_records(LABEL, scene.boxes)}
    count = len(scene.boxes)
    if kind == "caption":
        return example("caption", MODALITY, question, caption(scene.zones), **common)
    if kind == "presence":
        return example("vqa", MODALITY, question, "yes" if count else "no", **common)
    if kind == "count":
        return example("vqa", MODALITY, question, str(count), **common)
    if kind == "grounding":
        return example("grounding", MODALITY, question, grounding_answer(LABEL, scene.boxes, size),
                       reasoning=caption(scene.zones).removeprefix("Frontal chest X-ray with ").rstrip("."), **common)
    if kind == "report":
        return example(
            "report", MODALITY, question, report(scene.zones), answer=impression(scene.zones), **common
        )
    raise ValueError(f"unknown synth_xray question kind {kind!r}")

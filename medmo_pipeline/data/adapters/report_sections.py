"""Findings / impression sections of free-text radiology reports, as radiologists write them.

Real reports (MIMIC-CXR ``sXXXXXXXX.txt``, Open-i/IU-Xray, CheXpert Plus ``report`` text) head their
sections inconsistently: ``FINDINGS:`` and ``IMPRESSION:`` on their own lines, one combined
``FINDINGS AND IMPRESSION:`` section (about 10k MIMIC-CXR reports), ``CONCLUSION:`` (or ``SUMMARY:``,
``DIAGNOSIS:``, ``INTERPRETATION:``) where others say impression, lower-case or mid-line headings
(``... are clear. impression: no acute ...``, ``...clear.IMPRESSION:``), a heading alone on a line
without a colon, one ending in a dash or a full stop (``IMPRESSION - no acute ...``), or no content
heading at all (only ``INDICATION:`` /
``COMPARISON:`` and an unheaded body). ``report_sections`` reads all of these and says which
section(s) it used; headings that are not content (indication, history, technique, comparison,
examination, wet read, notification, ``FINAL REPORT``) end the section before them and are dropped.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

# Heading text (lower case, inner spaces collapsed) -> the section it opens.
COMBINED = "findings_and_impression"
_CONTENT = {
    "findings": "findings", "finding": "findings",
    "impression": "impression", "impressions": "impression",
    "conclusion": "conclusion", "conclusions": "conclusion", "opinion": "conclusion", "summary": "conclusion",
    "diagnosis": "conclusion", "diagnoses": "conclusion", "interpretation": "conclusion",
    "findings and impression": COMBINED, "impression and findings": COMBINED,
    "findings/impression": COMBINED, "findings / impression": COMBINED, "findings & impression": COMBINED,
    "provisional findings impression": COMBINED,
}
_OTHER = ("indication", "indications", "clinical indication", "history", "clinical history",
          "clinical information", "reason for exam", "reason for examination", "technique", "comparison",
          "comparisons", "examination", "exam", "type of examination", "procedure", "notification",
          "recommendation", "recommendations", "wet read", "addendum", "study", "reference exam")
_NAMES = sorted({*_CONTENT, *_OTHER}, key=len, reverse=True)  # longest first: "findings and impression"
_NAME_PATTERN = "|".join(re.escape(name).replace(r"\ ", r"\s+") for name in _NAMES)
# A heading starts a line, follows the end of a sentence (with or without a space), or follows a run
# of spaces; it ends with ':'.
_WITH_COLON = re.compile(
    rf"(?:^[ \t]*|(?<=[.;!?])[ \t]*|(?<=[ \t]{{2}}))(?P<name>{_NAME_PATTERN})[ \t]*:", re.IGNORECASE | re.MULTILINE)
# A heading alone on its line, in capitals, without a colon ("FINDINGS\n...").
_ALONE = re.compile(rf"^[ \t]*(?P<name>{_NAME_PATTERN.upper()})[ \t]*$", re.MULTILINE)
# A heading starting a line and ending in a dash or a full stop ("IMPRESSION - No acute ...",
# "Impression. No acute ..."), the text going on after it.
_DASHED = re.compile(rf"^[ \t]*(?P<name>{_NAME_PATTERN})[ \t]*(?:-{{1,2}}|[\u2013\u2014]|\.)(?=[ \t]|$)",
                     re.IGNORECASE | re.MULTILINE)
_FINAL_REPORT = re.compile(r"^[ \t]*FINAL\s+REPORT[ \t]*$", re.IGNORECASE | re.MULTILINE)
_BLANKS = " \t\r\n_"  # MIMIC-CXR writes "___" where de-identification removed a word
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class ReportSections:
    """What a report says, by section. ``used`` names the sections the text came from, joined by
    ``+`` in report order: ``findings``, ``impression``, ``conclusion`` (counted as impression),
    ``findings_and_impression`` (one combined section, its text in ``findings``), ``unheaded`` (text
    under no content heading, in ``findings``: the whole body of a report without content headings,
    or the text before an impression when there is no findings section), or ``""`` for no text."""

    findings: str
    impression: str
    used: str

    def __post_init__(self):  # a section of MIMIC's de-identification blanks only ("___") says nothing
        for name in ("findings", "impression"):
            if not getattr(self, name).strip(_BLANKS):
                object.__setattr__(self, name, "")

    def reply(self) -> str:
        """The training target, labelled by the section it came from."""
        if COMBINED in self.used.split("+") and not self.impression:
            return f"Findings and impression: {self.findings}" if self.findings else ""
        if self.used.startswith("unheaded"):
            parts = [f"Report: {self.findings}", f"Impression: {self.impression}" if self.impression else ""]
            return "\n".join(part for part in parts if part) if self.findings else ""
        parts = [f"Findings: {self.findings}" if self.findings else "",
                 f"Impression: {self.impression}" if self.impression else ""]
        return "\n".join(part for part in parts if part)


def report_sections(report: str) -> ReportSections:
    """The findings and impression of a free-text report, and which headings they came from."""
    report = _FINAL_REPORT.sub("", report.replace("\r\n", "\n").replace("\r", "\n"))
    headings = sorted([*_WITH_COLON.finditer(report), *_ALONE.finditer(report), *_DASHED.finditer(report)],
                      key=lambda m: m.start())
    found: dict[str, list[str]] = {}
    order: list[str] = []
    for position, match in enumerate(headings):
        following = headings[position + 1].start() if position + 1 < len(headings) else len(report)
        if following < match.end():
            continue  # the same heading matched by both patterns
        kind = _CONTENT.get(" ".join(match.group("name").lower().split()))
        body = _squash(report[match.end():following])
        if kind and body:
            found.setdefault(kind, []).append(body)
            if kind not in order:
                order.append(kind)
    if not order:
        body = _unheaded_body(report, headings)
        return ReportSections(body, "", "unheaded" if body else "")
    findings = " ".join(found.get("findings", []) + found.get(COMBINED, []))
    impression = " ".join(found.get("impression", []) + found.get("conclusion", []))
    preamble = _squash(report[:headings[0].start()])
    if not findings and preamble:  # "Lungs are clear.  IMPRESSION: normal": the body before it
        findings, order = preamble, ["unheaded", *order]
    return ReportSections(findings, impression, "+".join(order))


def split_sections(report: str) -> tuple[str, str]:
    """(findings, impression) of a free-text report; backward-compatible view of ``report_sections``.

    A combined FINDINGS AND IMPRESSION section and the body of a report without content headings
    come back as findings (impression ''); CONCLUSION / OPINION come back as impression. Call
    ``report_sections`` to know which heading(s) the text came from.
    """
    sections = report_sections(report)
    return sections.findings, sections.impression


def _unheaded_body(report: str, headings: list[re.Match]) -> str:
    """The report's body when no content heading names it: of each paragraph, the text before its
    first (non-content) heading. MIMIC-CXR writes such a body in paragraphs of its own, below the
    INDICATION / COMPARISON paragraphs."""
    starts = [match.start() for match in headings]  # in report order
    pieces, position = [], 0
    for paragraph in _PARAGRAPH.split(report):
        start = report.find(paragraph, position)
        position = start + len(paragraph)
        after = bisect_left(starts, start)  # the paragraph's first heading, if any (not a scan of all)
        first = starts[after] if after < len(starts) and starts[after] < position else position
        pieces.append(report[start:first])
    return _squash(" ".join(pieces))


def _squash(text: str) -> str:
    return " ".join(text.split())

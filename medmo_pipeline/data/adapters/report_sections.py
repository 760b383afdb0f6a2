"""Findings / impression sections of free-text radiology reports, as radiologists write them.

Real reports (MIMIC-CXR ``sXXXXXXXX.txt``, Open-i/IU-Xray, CheXpert Plus ``report`` text) head their
sections inconsistently: ``FINDINGS:`` and ``IMPRESSION:`` on their own lines, one combined
``FINDINGS AND IMPRESSION:`` section (about 10k MIMIC-CXR reports), ``CONCLUSION:`` (or ``SUMMARY:``,
``DIAGNOSIS:``, ``INTERPRETATION:``) where others say impression, lower-case or mid-line headings
(``... are clear. impression: no acute ...``, ``...clear.IMPRESSION:``), a heading alone on a line
without a colon, one ending in a dash or a full stop (``IMPRESSION - no acute ...``), in Markdown
emphasis, as Markdown headings or with a full-width colon (``**Findings:**``, ``## Findings``,
``FINDINGS：``), the body headed ``REPORT:`` or ``RESULTS:``, a view title the findings follow
(``CHEST, TWO VIEWS:``), misspelt or extended impressions (``IMPESSION:``, ``IMPRESSION AND
RECOMMENDATION:``, ``FINAL IMPRESSION:``), or no content heading at all (only ``INDICATION:`` /
``COMPARISON:`` and an unheaded body). The MIMIC-CXR variants are those MIT-LCP's section parser
(github.com/MIT-LCP/mimic-cxr, ``txt/section_parser.py``) counts in the release. ``report_sections``
reads all of these and says which section(s) it used; headings that are not content (indication,
history, technique, comparison, examination, date, wet read, notification, ``FINAL REPORT``) end
the section before them and are dropped, as are the preliminary reads (wet read, PFI, addendum) that
MIMIC-CXR puts above its ``FINAL REPORT`` banner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Heading text (lower case, inner spaces collapsed) -> the section it opens.
COMBINED = "findings_and_impression"
_CONTENT = {
    "findings": "findings", "finding": "findings",
    "impression": "impression", "impressions": "impression",
    "conclusion": "conclusion", "conclusions": "conclusion", "opinion": "conclusion",
    "diagnosis": "conclusion", "diagnoses": "conclusion", "interpretation": "conclusion",
    "findings and impression": COMBINED, "impression and findings": COMBINED,
    "findings/impression": COMBINED, "findings / impression": COMBINED, "findings & impression": COMBINED,
    "provisional findings impression": COMBINED, "provisional findings impression (pfi)": COMBINED,
    "report": "findings", "result": "findings", "results": "findings",  # the body, headed so (REPORT: ...)
    # MIMIC-CXR's own variants, as MIT-LCP's section_parser (mimic-cxr/txt) lists them with their counts:
    # the impression with its recommendation, a final impression, and the misspellings it found
    "impression and recommendation": "impression", "impression and recommendations": "impression",
    "impression/recommendation": "impression", "impression/recommendations": "impression",
    "final impression": "impression", "reference findings": "findings", "findings/ impression": COMBINED,
    **dict.fromkeys(("impresson", "imprression", "imoression", "impressoin", "imprssion", "impresion",
                     "imperssion", "impession"), "impression"),
    **dict.fromkeys(("findins", "findindgs", "findgings", "findngs", "findnings", "finidngs"), "findings"),
}
# Headings whose text is not the report's content. CheXpert Plus heads a category code "SUMMARY:
# 1-NORMAL", an "END OF IMPRESSION:" marker and the accession number; MIMIC-CXR writes
# "RECOMMENDATION(S):" (MIT-LCP's section_parser lists these).
_OTHER = ("indication", "indications", "clinical indication", "history", "clinical history",
          "clinical information", "reason for exam", "reason for examination", "technique", "comparison",
          "comparisons", "examination", "exam", "type of examination", "procedure", "procedure comments",
          "notification", "notifications", "recommendation", "recommendations", "recommendation(s)", "wet read",
          "addendum", "clinical information & questions to be answered",
          "study", "reference exam", "narrative", "summary", "end of impression", "accession number",
          "patient history", "comparison exam", "comparison film", "pfi", "wetread",
          "comparision", "comparsion", "comparrison", "comparisions", "idication")
# Words that head a section only at the start of a line: after a full stop or two spaces, "Date: of
# the prior study unknown" is a sentence
_LINE_START_ONLY = ("date", "comment", "comments")
_NAMES = sorted({*_CONTENT, *_OTHER}, key=len, reverse=True)  # longest first: "findings and impression"
_ALL_NAMES = sorted({*_NAMES, *_LINE_START_ONLY}, key=len, reverse=True)


def _names_pattern(names) -> str:
    return "|".join(re.escape(name).replace(r"\ ", r"\s+") for name in names)


# A heading starts a line, follows the end of a sentence (with or without a space), or follows a run
# of spaces; it ends with ':' (or a full-width '：'). Markdown emphasis around it is part of it
# ("**Findings:**", "**Findings**:"), as reports rewritten by language models write them.
_STARS = r"(?:\*{1,2})?"
_HASHES = r"(?:\#{1,6}[ \t]*)"  # a Markdown heading's marks ("## Findings")
_WITH_COLON = re.compile(
    rf"(?:(?:^[ \t]*{_HASHES}?|(?<=[.;!?])[ \t]*|(?<=[ \t]{{2}})){_STARS}(?P<name>{_names_pattern(_NAMES)})"
    rf"|^[ \t]*{_HASHES}?{_STARS}(?P<line_name>{_names_pattern(_LINE_START_ONLY)})){_STARS}[ \t]*[:\uff1a]"
    rf"(?:[ \t]*\*{{1,2}})?",
    re.IGNORECASE | re.MULTILINE)
# A heading alone on its line, in capitals, without a colon ("FINDINGS\n...", "FINDINGS AND IMPRESSION\n")
_ALONE = re.compile(rf"^[ \t]*{_STARS}(?P<name>{_names_pattern(name.upper() for name in _ALL_NAMES)}){_STARS}[ \t]*$",
                    re.MULTILINE)
# A Markdown heading alone on its line, in any case ("## Findings", "### impression")
_MARKDOWN = re.compile(rf"^[ \t]*{_HASHES}{_STARS}(?P<name>{_names_pattern(_ALL_NAMES)}){_STARS}[ \t]*$",
                       re.IGNORECASE | re.MULTILINE)
# A title naming the views of the study, in capitals, starting a line and ending in a colon
# ("CHEST, TWO VIEWS:", "PORTABLE CHEST:", "CHEST (PA AND LAT):"): MIMIC-CXR writes the findings
# after it (MIT-LCP's section_parser reads such titles as findings); a title with nothing after
# it before the next heading opens nothing.
# The title names the views (VIEW, PA, AP, LAT, FRONTAL...) and holds no full stop, so that a
# capitalised sentence about the chest ("CHEST TUBE UNCHANGED. IMPRESSION: ...", "CHEST WALL: ...")
# is not one.
_VIEW_WORDS = r"(?:VIEWS?|PA|AP|LAT|LATERAL|FRONTAL|PORTABLE|UPRIGHT|SUPINE|SEMI-UPRIGHT|SINGLE|ONE|TWO|1|2)"
_VIEW_TITLE = re.compile(rf"^[ \t]*(?P<name>(?=[A-Z0-9 \t,()/&-]*\b{_VIEW_WORDS}\b)[A-Z0-9 \t,()/&-]*\bCHEST\b"
                         r"[A-Z0-9 \t,()/&-]{0,40}?)[ \t]*:", re.MULTILINE)
# A heading starting a line and ending in a dash or a full stop ("IMPRESSION - No acute ...",
# "Impression. No acute ..."), the text going on after it.
_DASHED = re.compile(rf"^[ \t]*(?P<name>{_names_pattern(_ALL_NAMES)})[ \t]*(?:-{{1,2}}|[\u2013\u2014]|\.)(?=[ \t]|$)",
                     re.IGNORECASE | re.MULTILINE)
_FINAL_REPORT = re.compile(r"^[ \t]*FINAL\s+REPORT[ \t]*$", re.IGNORECASE | re.MULTILINE)
# MIMIC-CXR's line of underscores between an addendum or wet read and the final report
_SEPARATOR = re.compile(r"^[ \t]*_{10,}[ \t]*$", re.MULTILINE)
# The attending's sign-off in Stanford (CheXpert Plus) reports, after the impression and often with no
# heading before it; Stanford's CheXbert (src/cleaning/parse_raw_report.py) cuts the impression there too
_SIGN_OFF = re.compile(r"(?P<name>I\s+have\s+personally\s+reviewed\s+the\s+images\s+for\s+this\s+examination)",
                       re.IGNORECASE)
_BLANKS = " \t\r\n_"  # MIMIC-CXR writes "___" where de-identification removed a word
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
# Each section's label in the training reply, in the reply's order: the body, then the impression.
UNHEADED = "unheaded"
_LABELS = {UNHEADED: "Report", "findings": "Findings", COMBINED: "Findings and impression",
           "impression": "Impression", "conclusion": "Conclusion"}
_BODY = (UNHEADED, "findings", COMBINED)  # read as the findings
_CLOSING = ("impression", "conclusion")  # read as the impression


@dataclass(frozen=True)
class ReportSections:
    """What a report says, by section: ``parts`` are (section, text) in report order, one per
    section kind: ``findings``, ``impression``, ``conclusion``, ``findings_and_impression`` (one
    combined section) or ``unheaded`` (text under no content heading: the whole body of a report
    without content headings, or, when there is no findings section, the text that no heading
    covers, such as MIMIC-CXR's body paragraph between COMPARISON and IMPRESSION). A section of
    de-identification blanks only ("___") says nothing and is left out."""

    parts: tuple[tuple[str, str], ...]

    def __post_init__(self):
        object.__setattr__(self, "parts", tuple((kind, text) for kind, text in self.parts if text.strip(_BLANKS)))

    @classmethod
    def of_fields(cls, findings: str, impression: str) -> ReportSections:
        """Sections a release ships in fields of their own (CheXpert Plus ``section_findings``...), each
        cut at the sign-off a Stanford impression may end with."""
        return cls(tuple((kind, _SIGN_OFF.split(text, 1)[0].strip()) for kind, text in
                         (("findings", findings), ("impression", impression))))

    @property
    def used(self) -> str:
        """The sections the text came from, joined by ``+`` in report order; ``""`` for no text."""
        return "+".join(kind for kind, _ in self.parts)

    @property
    def findings(self) -> str:
        return self._joined(_BODY)

    @property
    def impression(self) -> str:
        return self._joined(_CLOSING)

    def reply(self) -> str:
        """The training target, each section's text labelled by the section it came from (so the
        row says which sections it used): body first, then impression and conclusion."""
        texts = dict(self.parts)
        return "\n".join(f"{label}: {texts[kind]}" for kind, label in _LABELS.items() if kind in texts)

    def _joined(self, kinds: tuple[str, ...]) -> str:
        texts = dict(self.parts)
        return " ".join(texts[kind] for kind in kinds if kind in texts)


def report_sections(report: str) -> ReportSections:
    """The sections of a free-text report, and which headings they came from."""
    report = report.replace("\r\n", "\n").replace("\r", "\n")
    banner = _FINAL_REPORT.search(report)
    if banner and report[banner.end():].strip():  # MIMIC-CXR puts an addendum, a wet read or a provisional
        report = report[banner.end():]  # impression (PFI) above the final report: preliminary, not the report
    report = _SEPARATOR.sub("", _FINAL_REPORT.sub("", report))
    headings = []
    matches = (*_WITH_COLON.finditer(report), *_ALONE.finditer(report), *_MARKDOWN.finditer(report),
               *_DASHED.finditer(report), *_VIEW_TITLE.finditer(report), *_SIGN_OFF.finditer(report))
    for match in sorted(matches, key=lambda m: m.start()):
        if match.re is _DASHED and _wrapped(report, match):
            continue
        if not headings or match.start() >= headings[-1].end():  # the same heading matched twice: once
            headings.append(match)
    found: dict[str, list[str]] = {}
    covered = []  # (start, end) of the text under a heading
    for position, match in enumerate(headings):
        following = headings[position + 1].start() if position + 1 < len(headings) else len(report)
        name = match.groupdict().get("name") or match.group("line_name")
        kind = "findings" if match.re is _VIEW_TITLE else _CONTENT.get(" ".join(name.lower().split()))
        if not kind:  # indication, comparison...: its paragraph (a body without heading may follow)
            following = _paragraph_end(report, match.end(), following)
        covered.append((match.start(), following))
        body = _squash(report[match.end():following])
        if kind and body:
            found.setdefault(kind, []).append(body)
    parts = [(kind, " ".join(texts)) for kind, texts in found.items()]
    if not any(kind in found for kind in ("findings", COMBINED)):
        unheaded = _squash(" ".join(_uncovered(report, covered)))
        parts.insert(0, (UNHEADED, unheaded))
    return ReportSections(tuple(parts))


def split_sections(report: str) -> tuple[str, str]:
    """(findings, impression) of a free-text report; backward-compatible view of ``report_sections``.

    A combined FINDINGS AND IMPRESSION section and the body of a report without content headings
    come back as findings (impression ''); CONCLUSION / OPINION come back as impression. Call
    ``report_sections`` to know which heading(s) the text came from.
    """
    sections = report_sections(report)
    return sections.findings, sections.impression


def _wrapped(report: str, match: re.Match) -> bool:
    """Whether a dashed heading's word only starts its line because the sentence before was wrapped
    there (MIMIC-CXR wraps lines at 79 characters: "... unchanged from the prior\n study.  No ..."): the
    line before it ends no sentence, and the word is not a capitalised heading under a line of prose."""
    before = report[:match.start()].rstrip(" \t")
    if not before.endswith("\n"):  # also the report's start: nothing before
        return False
    line = before[:-1].rsplit("\n", 1)[-1].strip()
    if not line or line.endswith((".", ":", ";", "!", "?")):  # a blank line, or a sentence ended
        return False
    return not match.group("name").isupper() or line.isupper()


def _paragraph_end(report: str, start: int, limit: int) -> int:
    """Where the paragraph holding ``start`` ends (at most ``limit``); a heading with nothing after
    it on its paragraph ("COMPARISON:", then a blank line) takes the next paragraph too."""
    end = _PARAGRAPH_END.search(report, start, limit)
    if end is not None and not report[start:end.start()].strip():
        end = _PARAGRAPH_END.search(report, end.end(), limit)
    return end.start() if end is not None else limit


def _uncovered(report: str, covered: list[tuple[int, int]]):
    """The pieces of ``report`` under no heading, in order (``covered`` is sorted and disjoint)."""
    position = 0
    for start, end in covered:
        yield report[position:start]
        position = end
    yield report[position:]


def _squash(text: str) -> str:
    return " ".join(text.split())

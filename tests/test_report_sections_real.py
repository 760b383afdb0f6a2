"""Report sections on report text as the releases publish it, each string quoted from a public source
named beside it: what the training reply keeps (findings and impression, nothing of the indication,
history, technique, comparison or notification, nothing of the impression lost), which sections the
row says it used, and what a report with neither section becomes (``missing_answer`` at curation).

Sources:
- MIT-LCP/mimic-cxr ``website/content/data/reports.md``: the example report, lines wrapped at 79
  characters, addenda above the report "delimited ... by underscores which span an entire line",
  ``___`` for de-identified words; ``txt/section_parser.py``: the headings it counts.
- MIMIC-CXR strings as public preprocessing code matches them verbatim (found by code search): the
  separator line and ``WET READ: ___ ___ ___ 9:14 AM`` (a ``customize_report`` key list, which also
  holds the sentences used as report bodies here), and a rule-based MIMIC-CXR structurer reading the
  rows above ``FINAL REPORT`` as ``FINAL ADDENDUM``, ``WET READ VERSION #N``, ``PROVISIONAL FINDINGS
  IMPRESSION (PFI):`` and ``CLINICAL INFORMATION & QUESTIONS TO BE ANSWERED:``.
- stanfordmlgroup/CheXbert ``src/cleaning/parse_raw_report.py``: Stanford impressions end at
  ``NOTIFICATIONS:`` and at "I have personally reviewed the images for this examination".
- CheXpert Plus rows (study keys patient00087/study3, patient00034/study1) as a public evaluation
  report quotes them: ``section_impression`` followed by the ``report`` text.
"""

from __future__ import annotations

import csv

from fixtures_formats import jpeg_bytes, png_bytes, write_file, write_mimic_split
from registry_sources import REGISTRY, registry_fixture

from medmo_pipeline.data.adapters import report
from medmo_pipeline.data.adapters.report_sections import ReportSections, report_sections

CLEAR = "Heart size is normal. Mediastinum is normal. Lungs are essentially clear."  # a MIMIC-CXR body, squashed
BANNER = "                                 FINAL REPORT\n"  # MIT-LCP reports.md
SEPARATOR = " " + "_" * 78 + "\n"  # the 78 underscores MIMIC-CXR draws under a wet read or an addendum

# MIT-LCP/mimic-cxr website/content/data/reports.md, verbatim
MIMIC_EXAMPLE = (BANNER + " EXAMINATION:  CHEST (PA AND LAT)\n \n"
                 " INDICATION:  ___ year old woman with ?pleural effusion  // ?pleural effusion\n \n"
                 " TECHNIQUE:  Chest PA and lateral\n \n COMPARISON:  ___\n \n FINDINGS: \n \n"
                 " Cardiac size cannot be evaluated.  Large left pleural effusion is new.  Small\n"
                 " right effusion is new.  The upper lungs are clear.  Right lower lobe opacities\n"
                 " are better seen in prior CT.  There is no pneumothorax.  There are mild\n"
                 " degenerative changes in the thoracic spine\n \n IMPRESSION: \n \n Large left pleural effusion\n")
EXAMPLE_FINDINGS = ("Cardiac size cannot be evaluated. Large left pleural effusion is new. Small right effusion is "
                    "new. The upper lungs are clear. Right lower lobe opacities are better seen in prior CT. There "
                    "is no pneumothorax. There are mild degenerative changes in the thoracic spine")


def test_the_published_mimic_example_keeps_findings_and_impression_only():
    sections = report_sections(MIMIC_EXAMPLE)
    assert sections.used == "findings+impression"
    assert sections.reply() == f"Findings: {EXAMPLE_FINDINGS}\nImpression: Large left pleural effusion"


def test_a_wet_read_above_the_final_report_is_left_out():
    """The preliminary read and the separator line leaked into the body ("Report: WET READ VERSION #1
    ... ______..."), and its impression stood beside the final one."""
    wet = " WET READ: ___ ___ ___ 9:14 AM\n  Right PICC terminates at the cavoatrial junction.  Clear lungs.\n"
    for preliminary in (wet, wet.replace("WET READ:", "WET READ VERSION #1")):
        sections = report_sections(preliminary + SEPARATOR + MIMIC_EXAMPLE)
        assert sections.used == "findings+impression"
        assert sections.reply() == f"Findings: {EXAMPLE_FINDINGS}\nImpression: Large left pleural effusion"
    body_only = (BANNER + " COMPARISON:  ___\n \n Heart size is normal.  Mediastinum is normal.  Lungs are "
                 "essentially clear.\n")
    sections = report_sections(wet.replace("WET READ:", "WET READ VERSION #1") + SEPARATOR + body_only)
    assert (sections.used, sections.findings) == ("unheaded", CLEAR)


def test_an_addendum_above_the_final_report_is_left_out_with_its_banner_and_underscores():
    """"FINAL ADDENDUM" and the line of underscores were read as the report's body."""
    addendum = ("                                 FINAL ADDENDUM\n ADDENDUM:  Findings were discussed with the "
                "surgical attending\n \n" + SEPARATOR)
    body = (" INDICATION:  ___-year-old woman with colitis, rule out tuberculosis.\n \n COMPARISON:  ___\n \n"
            " Heart size is normal.  Mediastinum is normal.  Lungs are essentially clear.\n \n"
            " IMPRESSION:  No acute cardiopulmonary process.\n")
    sections = report_sections(addendum + BANNER + body)
    assert sections.used == "unheaded+impression"
    assert sections.reply() == ("Report: Heart size is normal. Mediastinum is normal. Lungs are essentially clear.\n"
                                "Impression: No acute cardiopulmonary process.")


def test_a_provisional_impression_gives_way_to_the_final_report():
    """The heading with its "(PFI)" was no heading: its text ran into the section before it."""
    pfi = (" PROVISIONAL FINDINGS IMPRESSION (PFI):  Stable severe consolidation left lower lobe could be "
           "collapse or pneumonia.\n")
    assert report_sections(pfi + SEPARATOR + MIMIC_EXAMPLE).used == "findings+impression"
    assert "consolidation" not in report_sections(pfi + SEPARATOR + MIMIC_EXAMPLE).reply()
    alone = report_sections(" INDICATION:  ___ with cough\n \n" + pfi)  # no final report: the read there is
    assert alone.used == "findings_and_impression"
    assert alone.findings == "Stable severe consolidation left lower lobe could be collapse or pneumonia."


def test_clinical_information_and_questions_is_no_body():
    text = (" CLINICAL INFORMATION & QUESTIONS TO BE ANSWERED:  ___-year-old woman with colitis, rule out "
            "tuberculosis.\n \n Heart size is normal.  Mediastinum is normal.  Lungs are essentially clear.\n")
    sections = report_sections(text)
    assert (sections.used, sections.findings) == ("unheaded", CLEAR)


def test_notifications_end_the_impression():
    text = (" FINDINGS:  Heart size is normal.\n \n IMPRESSION:  No acute cardiopulmonary process.  NOTIFICATIONS:"
            "  Findings were discussed with the surgical attending\n")
    assert report_sections(text).impression == "No acute cardiopulmonary process."


def test_a_line_wrapped_before_a_heading_word_is_no_heading():
    """MIMIC-CXR wraps at 79 characters: "... prior\\n study.  No ..." opened a comparison-like
    section at "study." and the rest of the impression was lost (or "findings." moved it to findings).
    The sentences are the release's; where the wrap falls is ours."""
    text = (" FINDINGS:  A multiloculated right pleural effusion appears minimally changed since the prior\n"
            " study.  There is no pneumothorax.\n \n"
            " IMPRESSION:  Compared with ___, I doubt significant interval change in the\n"
            " findings.  No new consolidation; correlate with the clinical\n history.  Follow-up advised.\n")
    sections = report_sections(text)
    assert sections.used == "findings+impression"
    assert sections.findings == ("A multiloculated right pleural effusion appears minimally changed since the prior "
                                 "study. There is no pneumothorax.")
    assert sections.impression == ("Compared with ___, I doubt significant interval change in the findings. No new "
                                   "consolidation; correlate with the clinical history. Follow-up advised.")
    # the same words as headings still open sections (a template line after a sentence, or in capitals)
    assert report_sections("FINDINGS: Lungs clear.\nIMPRESSION - No acute process.").impression == "No acute process."
    assert report_sections("INDICATION: cough\nIMPRESSION - No acute process.").impression == "No acute process."


# CheXpert Plus patient00087/study3: section_impression, then the report text, as quoted
CHEXPERT_PLUS_IMPRESSION = ("1. THE LUNGS APPEAR CLEAR WITHOUT A FOCAL PARENCHYMAL PROCESS. 2. THERE IS MINIMAL BLUNTING "
                            "OF THE RIGHT COSTOPHRENIC ANGLE LIKELY REPRESENTING A SMALL PLEURAL EFFUSION.")
CHEXPERT_PLUS_REPORT = ("NARRATIVE: TWO VIEWS OF THE CHEST: 10/17/14. COMPARISON: Comparison is to previous exam from "
                        f"14/10. IMPRESSION: {CHEXPERT_PLUS_IMPRESSION} END OF IMPRESSION: I have personally reviewed the "
                        "images for this examination and agree with the report transcribed above. By: Elleah E., "
                        "Mcknight  on: 10-17-2014   ACCESSION NUMBER: 187-926-422-07 This report has been anonymized. "
                        "All dates are offset from the actual dates by a fixed interval associated with the patient.")
# CheXpert Plus patient00034/study1: section_findings, then section_impression ending in the sign-off
SIGNED_FINDINGS = ("Diffuse reticular opacities which are nonspecific and could be  related to interstitial lung "
                   "disease, pulmonary edema, or atypical  infection. No focal consolidation. No pleural effusion or  "
                   "pneumothorax. The cardiomediastinal silhouette is within normal  limits. No acute osseous abnormality.")
SIGNED_IMPRESSION = ("1.  Diffuse reticular opacities which are nonspecific and could be  related to interstitial lung "
                     "disease, pulmonary edema, or atypical  infection.      I have personally reviewed the images for "
                     "this examination and agreed with the report transcribed above.")


def test_chexpert_plus_report_text_and_fields_leave_the_sign_off_out():
    sections = report_sections(CHEXPERT_PLUS_REPORT)
    assert (sections.used, sections.impression) == ("impression", CHEXPERT_PLUS_IMPRESSION)
    unheaded = report_sections(f"{SIGNED_FINDINGS} {SIGNED_IMPRESSION}")
    assert unheaded.used == "unheaded" and "personally reviewed" not in unheaded.findings
    assert unheaded.findings.endswith("atypical infection.")
    fields = ReportSections.of_fields(SIGNED_FINDINGS, SIGNED_IMPRESSION)
    assert fields.used == "findings+impression" and "personally" not in fields.reply()
    assert fields.impression.endswith("atypical  infection.")


def test_chexpert_plus_rows_through_the_adapter(tmp_path):
    """The registry's chexpert_plus options: fields first, the report text when both are empty."""
    options = REGISTRY.get("chexpert_plus").adapters[0].options
    rows = [("train/patient00034/study1/view1_frontal.jpg", SIGNED_FINDINGS, SIGNED_IMPRESSION, ""),
            ("train/patient00087/study3/view2_frontal.jpg", "", "", CHEXPERT_PLUS_REPORT),
            ("train/patient00099/study1/view1_frontal.jpg", "", "", "NARRATIVE: CHEST 1 VIEW\n\nCOMPARISON: None.")]
    with open(tmp_path / options["file"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path_to_image", "split", "section_findings", "section_impression", "report"])
        for index, (path, findings, impression, text) in enumerate(rows):
            writer.writerow([path, "train", findings, impression, text])
            write_file(tmp_path, f"PNG/{path[:-4]}.png", png_bytes(seed=index))
    replies = {row["id"]: row["messages"][1]["content"] for row in report.iter_samples(tmp_path, options)}
    signed = SIGNED_IMPRESSION.split("      I have personally")[0]
    assert replies[rows[0][0]] == f"Findings: {SIGNED_FINDINGS}\nImpression: {signed}"
    assert replies[rows[1][0]] == f"Impression: {CHEXPERT_PLUS_IMPRESSION}"
    assert replies[rows[2][0]] == ""  # neither section: curation quarantines it (missing_answer)


def test_mimic_reports_through_the_adapter_and_curation(tmp_path, monkeypatch):
    """The registry's mimic_cxr layout: each report's reply says its sections; one with neither
    section is quarantined as missing_answer, by its own file."""
    build, curate = registry_fixture(tmp_path, monkeypatch)
    folder = build("mimic_cxr")
    base = "files/p10/p10000033"
    reports = {"s50000010": (" WET READ: ___ ___ ___ 9:14 AM\n  Clear lungs.\n" + SEPARATOR + MIMIC_EXAMPLE),
               "s50000011": (BANNER + " EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ with cough\n \n"
                             " COMPARISON:  ___\n")}
    for index, (study, text) in enumerate(reports.items()):
        write_file(folder, f"{base}/{study}.txt", text)
        write_file(folder, f"{base}/{study}/view1.jpg", jpeg_bytes(seed=40 + index))
    write_mimic_split(folder)  # the new studies in the train split
    result = curate("mimic_cxr")
    kept = {row["id"].rsplit("/", 1)[-1]: row for row in result["kept"]}
    assert kept["s50000010"]["messages"][1]["content"] == (f"Findings: {EXAMPLE_FINDINGS}\n"
                                                           "Impression: Large left pleural effusion")
    assert "s50000011" not in kept
    assert ("missing_answer", f"{base}/s50000011.txt", "report") in result["problems"]

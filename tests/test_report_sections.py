"""Report section splitting on the heading variants of real radiology reports (MIMIC-CXR free
text as PhysioNet ships it: a ``FINAL REPORT`` line, headings indented by one space, ``___`` for
de-identified spans), and the reply saying which section(s) it used."""

from __future__ import annotations

import pytest

from medmo_pipeline.data.adapters.report_sections import report_sections, split_sections

MIMIC_COMBINED = ("                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n"
                  " INDICATION:  ___F with cough  // pneumonia?\n \n COMPARISON:  ___\n \n"
                  " FINDINGS AND IMPRESSION:  Heart size is normal.  No focal consolidation,\n"
                  " effusion, or pneumothorax.\n")
MIMIC_UNHEADED = ("                                 FINAL REPORT\n CHEST RADIOGRAPH PERFORMED ON ___\n \n"
                  " COMPARISON:  Prior exam from ___.\n \n CLINICAL HISTORY:  Fever, question pneumonia.\n \n"
                  " PA and lateral views of the chest provided.  The lungs are clear.  No effusion.\n")


@pytest.mark.parametrize(("report", "findings", "impression", "used"), [
    ("EXAMINATION: CHEST\nFINDINGS: Clear lungs.\n  No effusion.\nIMPRESSION:\n No acute process.",
     "Clear lungs. No effusion.", "No acute process.", "findings+impression"),
    (MIMIC_COMBINED, "Heart size is normal. No focal consolidation, effusion, or pneumothorax.", "",
     "findings_and_impression"),
    ("FINDINGS:\r\nLungs clear.\r\nCONCLUSION: Normal chest.\r\n", "Lungs clear.", "Normal chest.",
     "findings+conclusion"),
    ("findings: lungs clear. impression: no acute disease.", "lungs clear.", "no acute disease.",
     "findings+impression"),
    ("The heart is normal.  IMPRESSION: No acute process.", "The heart is normal.", "No acute process.",
     "unheaded+impression"),
    ("FINDINGS\nLungs clear.\nIMPRESSION\nNormal.", "Lungs clear.", "Normal.", "findings+impression"),
    ("INDICATION: cough\n\nIMPRESSION: Normal.", "", "Normal.", "impression"),
    # a heading ending in a dash or a full stop, the text going on after it
    ("FINDINGS: Lungs clear.\nIMPRESSION - No acute process.", "Lungs clear.", "No acute process.",
     "findings+impression"),
    ("Findings -- Lungs clear.\n\nImpression. Normal.", "Lungs clear.", "Normal.", "findings+impression"),
    ("FINDINGS: Impression-free text.", "Impression-free text.", "", "findings"),  # a word, not a heading
    # a heading right after a full stop, without a space
    ("FINDINGS:Lungs clear.IMPRESSION:Normal.", "Lungs clear.", "Normal.", "findings+impression"),
    # other names of the impression
    ("FINDINGS: Lungs clear.\nINTERPRETATION: No acute process.", "Lungs clear.", "No acute process.",
     "findings+conclusion"),
    ("FINDINGS: Lungs clear.\nDIAGNOSIS: Normal chest.", "Lungs clear.", "Normal chest.", "findings+conclusion"),
    ("", "", "", ""),
    ("INDICATION: cough only", "", "", ""),
    # MIMIC-CXR: the body in a paragraph of its own between COMPARISON and IMPRESSION
    ((" INDICATION:  ___ with cough\n \n COMPARISON:  None.\n \n PA and lateral views.  Lungs clear.\n \n"
      " IMPRESSION:  No acute process.\n"), "PA and lateral views. Lungs clear.", "No acute process.",
     "unheaded+impression"),
    ("COMPARISON:\n\nNone.\n\nLungs clear.\n\nIMPRESSION: Normal.", "Lungs clear.", "Normal.", "unheaded+impression"),
    # MIMIC-CXR's RECOMMENDATION(S) ends the impression
    ("FINDINGS: Nodule.\nIMPRESSION: Small nodule. RECOMMENDATION(S): Chest CT in 3 months.", "Nodule.",
     "Small nodule.", "findings+impression"),
    # a combined heading alone on its line
    ("FINDINGS AND IMPRESSION\nLungs clear.", "Lungs clear.", "", "findings_and_impression"),
    # CheXpert Plus's report text: NARRATIVE, END OF IMPRESSION, a SUMMARY code, ACCESSION NUMBER
    (("NARRATIVE:\nCHEST 1 VIEW\n\nCLINICAL HISTORY: cough.\n\nFINDINGS:\nLungs are clear.\n\nIMPRESSION:\n"
      "1. No acute disease.\n\nEND OF IMPRESSION:\n\nSUMMARY:\n1-NORMAL\n\nACCESSION NUMBER: 12345\n"
      "This report has been anonymized."), "Lungs are clear.", "1. No acute disease.", "findings+impression"),
    ("NARRATIVE: CHEST 1 VIEW\n\nThe lungs are clear.\n\nIMPRESSION:\nNormal.\n\nSUMMARY:\n1-NORMAL",
     "The lungs are clear.", "Normal.", "unheaded+impression"),
    # Markdown emphasis (reports rewritten by a language model), a full-width colon, the body headed REPORT
    ("**Findings:** Lungs are clear.\n**Impression:** Normal.", "Lungs are clear.", "Normal.", "findings+impression"),
    ("**FINDINGS**: Lungs clear.\n\n**IMPRESSION**\nNormal.", "Lungs clear.", "Normal.", "findings+impression"),
    ("FINDINGS\uff1aLungs clear.\nIMPRESSION\uff1aNormal.", "Lungs clear.", "Normal.", "findings+impression"),
    ("REPORT: Lungs are clear.\n\nCONCLUSION: Normal.", "Lungs are clear.", "Normal.", "findings+conclusion"),
    ("FINAL REPORT\nRESULTS: Lungs clear.", "Lungs clear.", "", "findings"),
    ("IMPRESSION: ___ has resolved.", "", "___ has resolved.", "impression"),  # de-identification blanks stay
    # MIMIC-CXR's own headings, as MIT-LCP's section_parser lists them: histories, comparisons and dates
    # that are not the content, a view title the findings follow, misspelt and extended impressions
    (" PATIENT HISTORY:  ___-year-old man with cough.\n \n The lungs are clear.\n \n IMPRESSION:  Normal.\n",
     "The lungs are clear.", "Normal.", "unheaded+impression"),
    (" COMPARISON EXAM:  ___.\n \n The lungs are clear.\n \n IMPRESSION:  Normal.\n", "The lungs are clear.",
     "Normal.", "unheaded+impression"),
    (" COMPARISON FILM:  ___.\n \n DATE:  ___.\n \n The lungs are clear.\n \n IMPRESSION:  Normal.\n",
     "The lungs are clear.", "Normal.", "unheaded+impression"),
    (" INDICATION:  cough.\n \n CHEST, TWO VIEWS:  The lungs are clear.\n \n IMPRESSION:  Normal.\n",
     "The lungs are clear.", "Normal.", "findings+impression"),
    (" PORTABLE CHEST:\n \n INDICATION:  cough.\n \n The lungs are clear.\n", "The lungs are clear.", "",
     "unheaded"),  # a view title with nothing after it opens nothing
    (" FINDINGS:  The lungs are clear.\n \n IMPESSION:  Normal.\n", "The lungs are clear.", "Normal.",
     "findings+impression"),
    ("FINDINGS: Lungs clear.\nIMPRESSION AND RECOMMENDATION: Normal. Follow up in 1 year.", "Lungs clear.",
     "Normal. Follow up in 1 year.", "findings+impression"),
    ("FINDINGS: Lungs clear.\nFINAL IMPRESSION: Normal.", "Lungs clear.", "Normal.", "findings+impression"),
    ("FINDINGS: the chest: clear.", "the chest: clear.", "", "findings"),  # a view word in a sentence
    # capitalised sentences about the chest are no view titles, and a date in a sentence is no heading
    ("FINDINGS: LUNGS CLEAR.\nCHEST TUBE UNCHANGED. IMPRESSION: NO PNEUMOTHORAX.",
     "LUNGS CLEAR. CHEST TUBE UNCHANGED.", "NO PNEUMOTHORAX.", "findings+impression"),
    ("FINDINGS: Lungs clear.\nCHEST WALL: unremarkable.", "Lungs clear. CHEST WALL: unremarkable.", "", "findings"),
    ("CHEST PAIN: r/o pneumonia\n\nIMPRESSION: Normal.", "CHEST PAIN: r/o pneumonia", "Normal.",
     "unheaded+impression"),
    ("Heart is normal.  Date: of prior unknown, lungs clear.", "Heart is normal. Date: of prior unknown, lungs clear.",
     "", "unheaded"),
    (" CHEST (PA AND LAT):  The lungs are clear.\n", "The lungs are clear.", "", "findings"),
    # Markdown headings
    ("## Findings\nLungs clear.\n\n## Impression\nNormal.", "Lungs clear.", "Normal.", "findings+impression"),
    ("### FINDINGS: Lungs clear.\n### impression: Normal.", "Lungs clear.", "Normal.", "findings+impression"),
])
def test_heading_variants(report, findings, impression, used):
    sections = report_sections(report)
    assert (sections.findings, sections.impression, sections.used) == (findings, impression, used)
    assert split_sections(report) == (findings, impression)


def test_a_report_without_content_headings_keeps_its_body_and_says_so():
    sections = report_sections(MIMIC_UNHEADED)
    assert sections.used == "unheaded"
    assert sections.findings == ("CHEST RADIOGRAPH PERFORMED ON ___ PA and lateral views of the chest provided. "
                                 "The lungs are clear. No effusion.")
    assert sections.reply().startswith("Report: CHEST RADIOGRAPH")


def test_reply_labels_each_section_by_the_heading_it_came_from():
    assert report_sections(MIMIC_COMBINED).reply().startswith("Findings and impression: Heart size")
    assert report_sections("FINDINGS: a.\nCONCLUSION: b.").reply() == "Findings: a.\nConclusion: b."
    assert report_sections("impression: b.").reply() == "Impression: b."
    combined = report_sections(" FINDINGS AND IMPRESSION:  Heart size is normal.\n \n CONCLUSION:  Stable.\n")
    assert combined.used == "findings_and_impression+conclusion"
    assert combined.reply() == "Findings and impression: Heart size is normal.\nConclusion: Stable."
    both = report_sections("IMPRESSION: a.\nFINDINGS: b.\nCONCLUSION: c.")
    assert both.used == "impression+findings+conclusion"  # report order; the reply puts the body first
    assert both.reply() == "Findings: b.\nImpression: a.\nConclusion: c."


def test_a_word_inside_a_sentence_is_not_a_heading():
    assert split_sections("FINDINGS: the overall impression: stable.") == ("the overall impression: stable.", "")
    assert split_sections("FINDINGS: as in the prior report: stable.") == ("as in the prior report: stable.", "")

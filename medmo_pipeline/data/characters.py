"""The characters text is judged by, shared by the adapters (which strip record text) and curation
(which strips it again and quarantines control codes): both strip the same set, so a control code at
a field's edge reaches curation and is quarantined as it would be inside the field.
"""

from __future__ import annotations

import re

# C0 (but tab and line breaks), DEL and C1 codes, and Unicode's noncharacters (never text)
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")

# Characters that show nothing: zero-width space, non-joiner, joiner, word joiner, BOM, soft hyphen,
# the bidirectional marks, embeddings, overrides and isolates, the Mongolian vowel separator, the
# combining grapheme joiner and the Hangul and braille blanks. An answer of them alone says nothing.
INVISIBLE = ("\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e"
             "\u2066\u2067\u2068\u2069\u180e\u034f\u115f\u1160\u3164\uffa0\u2800")

# What is stripped around a text: whitespace (what ``str.strip`` takes, but the control codes among
# it, \x0b, \x0c, \x1c-\x1f and \x85, which are quarantined wherever they are) and the invisible
# characters, in any mix, in one pass
STRIPPED = "".join(c for c in map(chr, range(0x3001))
                   if c.isspace() and not CONTROL_CHARACTERS.match(c)) + INVISIBLE
ASCII_STRIPPED = "".join(c for c in STRIPPED if c.isascii())  # space, tab, CR, LF
SPACE = f"[{re.escape(STRIPPED)}]"  # one of them, in a pattern (``\s`` would take the control codes)
# a run of whitespace as ``stripped`` takes it, the invisible characters aside (they are deleted, not spaces)
WHITESPACE_RUN = re.compile("[" + re.escape("".join(c for c in STRIPPED if c not in INVISIBLE)) + "]+")


def stripped(text: str) -> str:
    r"""``text`` without the whitespace and invisible characters around it; a control code there
    stays, for curation to quarantine (``str.strip`` would drop \x0b, \x1f or \x85 unseen).

    >>> stripped(" \u200bCT scan\n")
    'CT scan'
    >>> stripped("\x0bCT scan\t")
    '\x0bCT scan'
    """
    return text.strip(STRIPPED)

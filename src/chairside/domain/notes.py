"""Free-text notes on an item or a patient: the text as stored.

The rules of domain/text.py (NFC; no bidirectional controls; no control characters; not only invisible
characters), with what a note needs beyond a name: several lines (line breaks kept as "\\n"; tabs kept),
trailing spaces of each line and blank lines at either end dropped, and a bound on the length. An empty
note (or one of spaces only) means "no note": it is stored as "" (so a later, older write cannot bring an
old text back when the writes travel between a relay and the cloud).
"""

from __future__ import annotations

import unicodedata

from chairside.domain.text import BIDI_CONTROLS, UnsafeText, visible_text

MAX_CHARS = 2000  # characters, after NFC: a few paragraphs, a chart note


class NoteTooLong(ValueError):
    pass


def clean_note(value: str) -> str:
    """The note as stored: NFC, line breaks as "\\n", each line's end trimmed, blank lines at either end
    dropped; "" for an empty note. UnsafeText for bidi or control characters (other than line breaks and
    tabs) or text that is only invisible; NoteTooLong past MAX_CHARS."""
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    text = "\n".join(lines)
    if not text:
        return ""
    if any(ch in BIDI_CONTROLS for ch in text):
        raise UnsafeText("contains characters that change the direction of the text (bidi controls)")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise UnsafeText("contains control characters")
    visible_text(text.replace("\n", " ").replace("\t", " "))  # refuses text that is only invisible
    if len(text) > MAX_CHARS:
        raise NoteTooLong(f"a note is at most {MAX_CHARS} characters ({len(text)} given)")
    return text

"""Names people type or files carry: one Unicode form, and no text that shows differently from what it is.

- NFC: `が` typed as か + combining mark and as one character are the same name (search, sort, duplicate checks).
- Bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C) are refused: they make a name or a
  file name display in another order than it is stored (`photo‮gpj.exe` shows as `photoexe.jpg`).
- Text made only of invisible characters (spaces, zero-width and other format characters) is refused: it looks
  empty on screen but is not.
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


class UnsafeText(ValueError):
    pass


def visible_text(value: str) -> str:
    """The text in NFC, stripped; UnsafeText when it holds a bidi control, a control character, or nothing
    visible."""
    text = unicodedata.normalize("NFC", value).strip()
    if any(ch in BIDI_CONTROLS for ch in text):
        raise UnsafeText("contains characters that change the direction of the text (bidi controls)")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise UnsafeText("contains control characters")
    if not any(not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Zs", "Zl", "Zp", "Mn", "Me")
               for ch in text):
        raise UnsafeText("is empty or only invisible characters")
    return text

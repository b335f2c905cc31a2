"""Search keys for Japanese names: pure functions, no I/O.

`やまだ`, `ヤマダ`, `ﾔﾏﾀﾞ` and `ﾔﾏﾀﾞ` with a full-width space all give the key `やまだ`:
NFKC folds half-width katakana, full-width Latin and digits, and composed voicing
marks; katakana are then shifted to hiragana; case and white space are dropped.
"""

from __future__ import annotations

import re
import unicodedata

_KATAKANA_START, _KATAKANA_END = 0x30A1, 0x30F6  # ァ … ヶ
_TO_HIRAGANA = {c: c - 0x60 for c in range(_KATAKANA_START, _KATAKANA_END + 1)}
_SPACES = re.compile(r"[\s\u3000・･]+")


def fold(text: str) -> str:
    """NFKC, katakana → hiragana, lower case; white space kept as single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_TO_HIRAGANA).casefold()
    return _SPACES.sub(" ", text).strip()


def search_key(text: str) -> str:
    """The folded text with every space removed: what a query is compared against."""
    return fold(text).replace(" ", "")


def search_terms(*fields: str) -> set[str]:
    """Every term a patient is found by: each field whole, and each of its words.

    A query matches a patient when it is a prefix of one of the terms, so 「やまだ」
    finds 山田 太郎 (やまだ たろう) by the family name, 「たろう」 by the given name,
    and 「やまだた」 by the whole.
    """
    terms: set[str] = set()
    for field in fields:
        folded = fold(field)
        if not folded:
            continue
        terms.add(folded.replace(" ", ""))
        terms.update(word for word in folded.split(" ") if word)
    return terms


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`."""
    return prefix + "\U0010ffff"

"""Consonant skeletons: a name written in Latin letters meets its Arabic spelling.

Offline there is no translation model; what an English question shares with
an Arabic article is mostly its names. Both spellings are reduced to a
skeleton of consonant classes (vowels dropped, since Arabic rarely writes
short ones; letters English cannot tell apart merged: ح/ه -> H, ت/ط -> T,
س/ص -> S, د/ض -> D, ك/ق -> K, ج/غ -> G), so "Hamad" and "حمد", "Qatar" and
"قطر", "Lavrov" and "لافروف" share a skeleton. Hand-written: no library does
this here. Arabic triliteral roots collide often; IDF and the other evidence
keep that in check.
"""

from __future__ import annotations

import re

from rag.text import _stopwords, fold

_LATIN_DIGRAPHS = {"sh": "C", "ch": "C", "kh": "K", "th": "T", "dh": "Z", "gh": "G", "ph": "F", "ck": "K"}
_LATIN = {"b": "B", "p": "B", "c": "K", "d": "D", "f": "F", "v": "F", "g": "G", "j": "G", "h": "H", "k": "K",
          "q": "K", "l": "L", "m": "M", "n": "N", "r": "R", "s": "S", "t": "T", "x": "KS", "z": "Z"}
_ARABIC = {"ب": "B", "ت": "T", "ث": "T", "ج": "G", "ح": "H", "خ": "K", "د": "D", "ذ": "Z", "ر": "R", "ز": "Z",
           "س": "S", "ش": "C", "ص": "S", "ض": "D", "ط": "T", "ظ": "Z", "غ": "G", "ف": "F", "ق": "K", "ك": "K",
           "ل": "L", "م": "M", "ن": "N", "ه": "H", "ة": "", "پ": "B", "ڤ": "F", "گ": "G", "چ": "C"}
_NAME = re.compile(r"^[A-Z][A-Za-z]{2,}$")
_ARTICLE = re.compile(r"^(و|ف|ب|ل)?(ال)")


def _collapse(letters: list[str]) -> str:
    out: list[str] = []
    for ch in "".join(letters):
        if not out or out[-1] != ch:
            out.append(ch)
    return "".join(out)


def latin_skeleton(word: str) -> str:
    w = word.lower()
    letters: list[str] = []
    i = 0
    while i < len(w):
        pair = w[i : i + 2]
        if pair in _LATIN_DIGRAPHS:
            letters.append(_LATIN_DIGRAPHS[pair])
            i += 2
            continue
        letters.append(_LATIN.get(w[i], ""))
        i += 1
    return _collapse(letters)


def arabic_skeleton(word: str) -> str:
    w = fold(word.replace("ة", ""))  # ta marbuta is not pronounced at a pause: Gaza, غزة
    if len(w) > 4:
        w = _ARTICLE.sub("", w, count=1)
    return _collapse([_ARABIC.get(ch, "") for ch in w])


def name_skeletons(question: str) -> list[str]:
    """Skeletons of the capitalized Latin words of ``question`` (likely names)."""
    out = []
    for raw in question.split():
        word = re.sub(r"['’]s$", "", raw.strip(".,;:!?\"()[]'’"))
        if _NAME.match(word) and fold(word) not in _stopwords():
            sk = latin_skeleton(word)
            if len(sk) >= 2:
                out.append(sk)
    return out

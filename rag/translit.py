"""Latin-script names spelled in Arabic letters, for English questions over Arabic text.

Offline there is no translation model; what an English question shares with
an Arabic article is mostly its names. Rule-based spellings (two vowel
policies, since Arabic often drops short vowels) are matched fuzzily against
the index through character n-grams. Hand-written: no library does this here.
"""

from __future__ import annotations

import re

from rag.text import _stopwords

_DIGRAPHS = [
    ("sh", "ش"),
    ("kh", "خ"),
    ("th", "ث"),
    ("gh", "غ"),
    ("ch", "تش"),
    ("ph", "ف"),
    ("dh", "ذ"),
    ("ou", "و"),
    ("oo", "و"),
    ("ee", "ي"),
    ("ai", "اي"),
    ("ay", "اي"),
    ("ck", "ك"),
]
_LETTERS = {
    "b": "ب",
    "c": "ك",
    "d": "د",
    "f": "ف",
    "g": "غ",
    "h": "ه",
    "j": "ج",
    "k": "ك",
    "l": "ل",
    "m": "م",
    "n": "ن",
    "p": "ب",
    "q": "ق",
    "r": "ر",
    "s": "س",
    "t": "ت",
    "v": "ف",
    "w": "و",
    "x": "كس",
    "y": "ي",
    "z": "ز",
}
_LONG = {"a": "ا", "e": "ي", "i": "ي", "o": "و", "u": "و"}
_NAME = re.compile(r"^[A-Z][a-z]{2,}$")


def _spell(word: str, short_vowels: bool) -> str:
    w = word.lower()
    out: list[str] = []
    i = 0
    while i < len(w):
        pair = w[i : i + 2]
        sub = next((ar for lat, ar in _DIGRAPHS if lat == pair), None)
        if sub is not None:
            out.append(sub)
            i += 2
            continue
        ch = w[i]
        if ch in _LONG:
            if i == 0:
                out.append("ا" if ch in "ae" else _LONG[ch])
            elif short_vowels or ch in "ou" or i == len(w) - 1:
                out.append(_LONG[ch] if ch != "e" or short_vowels else "")
        elif i == 0 or w[i - 1] != ch:  # doubled consonants are written once
            out.append(_LETTERS.get(ch, ""))
        i += 1
    return "".join(out)


def latin_to_arabic_candidates(word: str) -> list[str]:
    """Arabic-script spellings of a capitalized Latin word (a likely name); else none."""
    word = word.strip(".,;:!?\"'()[]")
    if not _NAME.match(word) or word.lower() in _stopwords():
        return []
    return sorted({_spell(word, True), _spell(word, False)} - {""})

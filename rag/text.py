"""Arabic-aware text analysis shared by indexing, querying and evaluation.

Written by hand because no library here does Arabic retrieval analysis as a
whole: Unicode cleanup (diacritics, tatweel, Arabic-Indic digits), orthographic
unification for matching (alef forms, alef maqsura, ta marbuta), clitic-aware
stemming on top of Snowball Arabic (PyStemmer), and stopwords. The same
:class:`Analyzer` runs on documents and on queries.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from functools import lru_cache
from importlib import resources

import Stemmer

# Harakat, superscript alef, Quranic annotation marks.
_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed]")
_TATWEEL = "\u0640"
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_ORTHO = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_ARABIC_LETTER = re.compile("[\u0621-\u064a]")
_LATIN_LETTER = re.compile("[a-zA-Z]")


def clean(text: str) -> str:
    """Unicode-normalize and strip what never carries meaning for search.

    Keeps alef forms intact: Snowball Arabic normalizes them itself and
    unifying them first breaks some of its suffix rules (see NOTES).
    """
    text = unicodedata.normalize("NFKC", text)
    text = _DIACRITICS.sub("", text).replace(_TATWEEL, "")
    return text.translate(_DIGITS).lower()


def fold(text: str) -> str:
    """Normalization for matching text against text (gold facts, quotes).

    Diacritics, tatweel, digits and case as in :func:`clean`, plus the
    orthographic variants writers use interchangeably (أ/إ/آ/ا, ى/ي, ة/ه),
    and whitespace collapsed.
    """
    return " ".join(clean(text).translate(_ORTHO).split())


# Tokens and retrieved sentences repeat endlessly: folding each once saves a measurable share
# of an answer's CPU time (cProfile).
fold_cached = lru_cache(maxsize=200_000)(fold)


def is_arabic(token: str) -> bool:
    return bool(_ARABIC_LETTER.search(token))


def detect_language(text: str) -> str:
    """``ar`` or ``en`` by letter counts; Arabic wins ties (the product's first language)."""
    ar = len(_ARABIC_LETTER.findall(text))
    latin = len(_LATIN_LETTER.findall(text))
    return "en" if latin > ar else "ar"


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    words: set[str] = set()
    base = resources.files("llama_index.core") / "_static" / "nltk_cache" / "corpora" / "stopwords"
    for lang in ("arabic", "english"):
        with contextlib.suppress(OSError):  # llama-index always ships them; tolerate a trimmed install
            words.update(fold(w) for w in (base / lang).read_text(encoding="utf-8").split())
    # Question words that nltk's list lacks; they never help find a passage.
    words.update(
        fold(w) for w in ["ماذا", "متى", "كم", "لماذا", "كيف", "اين", "هل", "ما", "من", "اي", "أي", "ماهي", "ماهو"]
    )
    return frozenset(words)


class Analyzer:
    """Turns text into index terms: cleaned, stopword-free, stemmed tokens."""

    def __init__(self) -> None:
        self._ar = Stemmer.Stemmer("arabic")
        self._en = Stemmer.Stemmer("english")
        self._stop = _stopwords()
        self._cache: dict[str, str] = {}

    def tokens(self, text: str) -> list[str]:
        """Cleaned surface tokens, stopwords removed, in order."""
        return [t for t in _TOKEN.findall(clean(text)) if fold_cached(t) not in self._stop]

    def stem(self, token: str) -> str:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        if is_arabic(token):
            stem = self._ar.stemWord(token)
            # Snowball keeps a conjunction و/ف glued before the article ال
            # (والمفاوضين -> والمفاوض); drop it so both forms meet.
            if len(stem) > 5 and stem[0] in "وف" and stem[1:3] == "ال":
                stem = stem[3:]
            elif len(stem) > 4 and stem.startswith("ال"):
                stem = stem[2:]
            stem = stem.translate(_ORTHO)
            # Country names in -يا and their nisba adjectives meet: Snowball gives تركيا -> تركي but
            # التركية -> ترك (likewise روسيا/الروسي, سوريا/السورية).
            if len(stem) >= 4 and stem.endswith("ي") and token.translate(_ORTHO).endswith("يا"):
                stem = stem[:-1]
        elif token.isdigit():
            stem = token.lstrip("0") or "0"
        else:
            stem = self._en.stemWord(token)
        if len(self._cache) < 200_000:
            self._cache[token] = stem
        return stem

    def terms(self, text: str) -> list[str]:
        """Index terms of ``text``; the same function serves documents and queries."""
        return [self.stem(t) for t in self.tokens(text)]

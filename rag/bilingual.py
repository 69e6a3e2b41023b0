"""An English–Arabic dictionary: what lets an English question's words be found in Arabic sentences.

Without it, an English question shares only names (consonant skeletons) and numbers with an Arabic
article, so the offline answerer judges Arabic sentences mostly by the encoder's cosine, which tells a
sentence *on the topic* from one that *answers* poorly. With it, each content word of the question
("meeting", "attended", "minister") is looked up, and a sentence is credited with the words whose
translation it holds (اجتماع, حضر, وزير), weighted by rarity like same-script words.

The dictionaries are FreeDict's English–Arabic (Arabeyes word list, 87k headwords) and Arabic–English
(53k, read in reverse: it adds the synonyms the first lacks, قائد beside زعيم for "leader"), GPL-2+, read
from their dictd files where Debian's ``dict-freedict-eng-ara`` and ``dict-freedict-ara-eng`` install
them, or from the paths in ``SANAD_ANSWER__DICTIONARY`` (FreeDict's other downloads use the same
format). They are data read at run time, not shipped with Sanad. The dictd format is read here by hand:
no maintained Python reader for it is on PyPI, and it is only an index of base64 offsets.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from rag.text import is_arabic

log = logging.getLogger("sanad")

DEBIAN_PATHS = (Path("/usr/share/dictd/freedict-eng-ara.index"), Path("/usr/share/dictd/freedict-ara-eng.index"))
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*[A-Za-z]")
_SENSE_NUMBER = re.compile(r"^\s*\d+\.\s*")
_ALTERNATIVES = re.compile(r"[،,;؛/]|\s-\s")
_PARENS = re.compile(r"\([^)]*\)")
# A translation longer than this (in content words) is a definition, not an equivalent: it would be
# credited only when a sentence happens to hold all of its words.
_MAX_ALTERNATIVE_TERMS = 3


_WH = frozenset({"what", "which", "whose", "how"})
_QUESTION_FRAME = frozenset({"many", "much", "name", "names", "named", "called", "call", "known", "kind", "kinds",
                             "type", "types", "sort"})


def _b64(text: str) -> int:
    n = 0
    for c in text:
        n = n * 64 + _B64[c]
    return n


def _lemmas(word: str) -> list[str]:
    """``word`` and the forms English inflection may have come from (plural, past, participle): general
    suffix rules, tried in order; the dictionary decides which exists."""
    out = [word]
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"),
                         ("ing", ""), ("ing", "e"), ("'s", ""), ("’s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            out.append(word[: -len(suffix)] + repl)
    return out


class Dictionary:
    """English word -> its Arabic equivalents, each as the index terms (stems) it must match."""

    def __init__(self, entries: Callable[[], dict[str, list[str]]], terms: Callable[[str], list[str]]) -> None:
        self._load = entries  # read at the first lookup: Arabic questions and start-up never pay for it
        self._entries: dict[str, list[str]] | None = None
        self._terms = terms
        self.lookup = lru_cache(maxsize=20_000)(self._lookup)

    def _lookup(self, word: str) -> tuple[frozenset[str], ...]:
        """The term sets of ``word``'s translations (empty if the dictionary lacks it)."""
        if self._entries is None:
            self._entries = self._load()
        # Every form the word may come from: "heads" is listed as the plural of the noun (الرؤوس), the
        # verb "to head" (ترأّس, الرئيس) only under "head".
        alternatives: set[frozenset[str]] = set()
        for lemma in _lemmas(word.lower()):
            found: set[frozenset[str]] = set()
            for line in self._entries.get(lemma, ()):
                for alt in _ALTERNATIVES.split(_PARENS.sub(" ", _SENSE_NUMBER.sub("", line))):
                    terms = frozenset(self._terms(alt))
                    if terms and len(terms) <= _MAX_ALTERNATIVE_TERMS:
                        found.add(terms)
            # The word itself, where every sense glosses it with more words ("Israeli": المواطن الإسرائيلي,
            # متعلّق بإسرائيل): the term all its translations share is enough.
            if len(found) > 1 and (core := frozenset.intersection(*found)):
                found.add(core)
            alternatives |= found
        if alternatives:
            return tuple(sorted(alternatives, key=sorted))
        return ()

    def question_words(self, question: str, stopwords: frozenset[str]) -> list[tuple[str, tuple[frozenset[str], ...]]]:
        """The question's English content words that the dictionary translates, each with its translations.

        Left out: the words that frame a question rather than say what it is about: the noun a wh-word
        asks for ("what *year*", "which *country*", "how *long*": the answer is a year, not the word سنة),
        and naming verbs and kind nouns ("what is it *called*", "what *kind* of")."""
        out, seen = [], set()
        words = [w.lower() for w in _WORD.findall(question)]
        for i, lw in enumerate(words):
            if i and words[i - 1] in _WH:
                continue
            if lw in seen or lw in stopwords or lw in _QUESTION_FRAME or len(lw) < 3:
                continue
            seen.add(lw)
            translations = self.lookup(lw)
            if translations:
                out.append((lw, translations))
        return out


def _dictd(index_path: Path) -> tuple[bytes, dict[str, list[tuple[int, int]]]]:
    """A dictd dictionary (``NAME.index`` beside ``NAME.dict`` or ``NAME.dict.dz``): its text and, per
    lowercase headword, where its entries are."""
    stem = index_path.name.removesuffix(".index")
    bodies = [index_path.parent / f"{stem}.dict.dz", index_path.parent / f"{stem}.dict"]
    body_path = next((p for p in bodies if p.exists()), None)
    if body_path is None:
        raise FileNotFoundError(f"no {stem}.dict or {stem}.dict.dz beside {index_path}")
    raw = body_path.read_bytes()
    if body_path.suffix == ".dz":  # dictzip is gzip with a random-access table in an extra field
        raw = gzip.decompress(raw)
    spans: dict[str, list[tuple[int, int]]] = {}
    for line in index_path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and not parts[0].startswith("00database"):
            spans.setdefault(parts[0].lower(), []).append((_b64(parts[1]), _b64(parts[2])))
    return raw, spans


def _entry(raw: bytes, start: int, length: int) -> tuple[str, list[str]]:
    """An entry's headword (without its pronunciation) and its translation lines."""
    lines = [x.strip() for x in raw[start : start + length].decode("utf-8", "replace").strip().splitlines()]
    return lines[0].split(" /", 1)[0].strip() if lines else "", [x for x in lines[1:] if x]


def read_dictd(index_path: Path) -> dict[str, list[str]]:
    """English headword (lowercase) -> Arabic translation lines, from an English–Arabic dictd dictionary, or
    inverted from an Arabic–English one (its English translations become headwords of its Arabic ones)."""
    raw, spans = _dictd(index_path)
    out: dict[str, list[str]] = {}
    arabic = any(is_arabic(w) for w in list(spans)[:50])
    for word, places in spans.items():
        for start, length in places:
            head, lines = _entry(raw, start, length)
            if not arabic:
                out.setdefault(word, []).extend(lines)
                continue
            for line in lines:
                english = _SENSE_NUMBER.sub("", line).strip().lower()
                if english and len(english.split()) == 1:
                    out.setdefault(english, []).append(head)
    return out


def _paths(setting: str) -> list[Path]:
    if setting.lower() == "auto":
        return [p for p in DEBIAN_PATHS if p.exists()]
    return [Path(p.strip()) for p in setting.split(",") if p.strip()]


def load_dictionary(setting: str, terms: Callable[[str], list[str]], cache: Path | None = None) -> Dictionary | None:
    """``setting``: ``auto`` (Debian's FreeDict English–Arabic and Arabic–English, those installed), ``none``,
    or comma-separated dictd ``.index`` paths. Read at the first English question; a missing or unreadable
    dictionary is logged and the answerer goes on without it. ``cache``: a JSON file keeping what was read
    (0.1 s to load instead of 0.7 s to parse), valid while the dictionary files are unchanged."""
    if setting.lower() in ("", "none", "off"):
        return None
    paths = _paths(setting)
    if not paths:
        log.info("No English–Arabic dictionary (apt install dict-freedict-eng-ara dict-freedict-ara-eng): English "
                 "questions are matched to Arabic sentences by names, numbers and meaning only.")
        return None

    def entries() -> dict[str, list[str]]:
        sources = [[str(p), *_stamp(p)] for p in paths]
        if cache is not None:
            try:
                kept = json.loads(cache.read_text(encoding="utf-8"))
                if kept.get("sources") == sources:
                    return dict(kept["entries"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # no cache yet, or another version: read the dictionaries
        merged: dict[str, list[str]] = {}
        complete = True
        for path in paths:
            try:
                for word, lines in read_dictd(path).items():
                    merged.setdefault(word, []).extend(lines)
            except (OSError, ValueError, KeyError, IndexError) as exc:
                log.warning("English–Arabic dictionary %s unreadable (%s); going on without it.", path, exc)
                complete = False
        if cache is not None and complete:
            try:
                tmp = cache.with_suffix(".tmp")
                tmp.write_text(json.dumps({"sources": sources, "entries": merged}, ensure_ascii=False), "utf-8")
                tmp.replace(cache)
            except OSError as exc:
                log.debug("dictionary cache not written: %s", exc)
        return merged

    return Dictionary(entries, terms)


def _stamp(path: Path) -> list[int]:
    try:
        st = path.stat()
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]

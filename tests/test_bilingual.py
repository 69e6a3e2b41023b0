"""The English–Arabic dictionary: read from dictd files, used to find an English question's words in Arabic
sentences, and never a reason to fail."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from rag.bilingual import DEBIAN_PATHS, Dictionary, load_dictionary
from rag.engine import Sanad
from rag.extractive import Sentence, SentenceScorer
from rag.lexical import LexicalEncoder
from rag.models import Passage
from rag.settings import AnswerSettings, Settings
from rag.text import _stopwords
from tests.conftest import index_seeds

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n: int) -> str:
    out = ""
    while True:
        out = _B64[n % 64] + out
        n //= 64
        if not n:
            return out


def write_dictd(folder: Path, name: str, entries: list[tuple[str, list[str]]]) -> Path:
    """A dictd dictionary as FreeDict ships it: NAME.dict (entries) and NAME.index (headword, offset, length)."""
    body, index = b"", []
    for head, lines in entries:
        text = ("\n".join([f"{head} /x/", *lines]) + "\n").encode()
        index.append(f"{head.lower()}\t{b64(len(body))}\t{b64(len(text))}")
        body += text
    (folder / f"{name}.dict").write_bytes(body)
    path = folder / f"{name}.index"
    path.write_text("00databaseinfo\tA\tB\n" + "\n".join(index) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def encoder() -> LexicalEncoder:
    return LexicalEncoder()


@pytest.fixture
def dictionary(tmp_path: Path, encoder: LexicalEncoder) -> Dictionary:
    eng_ara = write_dictd(tmp_path, "eng-ara", [("Meeting", ["الاجتماع"]), ("Attend", ["1. حضر", "2. شارك"]),
                                                ("Year", ["السنة"]), ("Reconstruction", ["الإعمار"]),
                                                ("Negotiator", ["1. المفاوض المحترف", "2. ممثل مفاوض"]),
                                                ("Head", ["الرئيس"]), ("Heads", ["الرؤوس"])])
    ara_eng = write_dictd(tmp_path, "ara-eng", [("القائد", ["1. Commander", "2. Leader"])])
    d = load_dictionary(f"{eng_ara},{ara_eng}", lambda text: encoder.features(text)[0])
    assert d is not None
    return d


def test_words_are_looked_up_through_their_inflections_in_both_dictionaries(dictionary: Dictionary) -> None:
    assert dictionary.lookup("meetings") == dictionary.lookup("meeting") != ()
    assert len(dictionary.lookup("attended")) == 2  # both senses: حضر and شارك
    assert dictionary.lookup("leader")  # only in the Arabic–English one, read in reverse
    assert dictionary.lookup("zebra") == ()


def test_a_word_every_sense_glosses_with_more_words_is_found_alone(dictionary: Dictionary,
                                                                  encoder: LexicalEncoder) -> None:
    text = "وقال المفاوض إن المحادثات مستمرة."  # neither "professional" nor "representative" is in it
    passage = Passage(chunk_id="c", doc_id="d", text=text, start=0, end=len(text))
    sentence = Sentence(passage, 0, len(text), text)
    SentenceScorer(encoder, dictionary).score("What did the negotiator say?", [sentence])
    assert sentence.score > 0


def test_an_inflected_word_gets_the_senses_of_the_word_it_comes_from(dictionary: Dictionary) -> None:
    heads = set(dictionary.lookup("heads"))
    assert set(dictionary.lookup("head")) <= heads  # "heads the delegation": الرئيس, not only الرؤوس
    assert len(heads) == 2


def test_the_words_that_frame_a_question_are_not_asked_for(dictionary: Dictionary) -> None:
    words = [w for w, _ in dictionary.question_words("In what year did the leader attend the meeting?", _stopwords())]
    assert words == ["leader", "attend", "meeting"]  # "year" is what is asked for, not what the sentence says


def test_an_english_question_credits_the_arabic_sentence_holding_its_words(
        dictionary: Dictionary, encoder: LexicalEncoder) -> None:
    text = "وتحدث المسؤولون عن الوضع في غزة. وحضر القائد الاجتماع في القاهرة."
    passage = Passage(chunk_id="c", doc_id="d", text=text, start=0, end=len(text))
    first = Sentence(passage, 0, 32, text[:32])
    second = Sentence(passage, 33, len(text), text[33:])
    for scorer, credited in ((SentenceScorer(encoder), False), (SentenceScorer(encoder, dictionary), True)):
        scorer.score("Who attended the meeting with the leader?", [first, second])
        assert (second.score > first.score) is credited


def test_a_missing_or_broken_dictionary_is_said_once_and_answers_go_on(
        tmp_path: Path, encoder: LexicalEncoder, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.index").write_text("meeting\tA\tZZZZ\n", encoding="utf-8")  # no .dict beside it
    caplog.set_level(logging.WARNING, "sanad")
    d = load_dictionary(str(tmp_path / "broken.index"), lambda text: encoder.features(text)[0])
    assert d is not None and d.lookup("meeting") == () and d.lookup("meetings") == ()
    assert sum("unreadable" in r.message for r in caplog.records) == 1
    assert load_dictionary("none", lambda text: []) is None


@pytest.mark.skipif(not DEBIAN_PATHS[0].exists(), reason="FreeDict English–Arabic not installed "
                    "(scripts/install-dictionary.sh; CI installs it)")
def test_with_freedict_an_english_question_quotes_the_sentence_that_answers_it() -> None:
    question = "What did the participants start doing in the damaged areas of Gaza?"
    first_quotes = {}
    for setting in ("none", "auto"):
        settings = Settings.in_memory(tempfile.mkdtemp(), answer=AnswerSettings(dictionary=setting))
        engine = Sanad.open(settings)
        try:
            index_seeds(engine, settings)
            answer = engine.ask(question)
        finally:
            engine.close()
        assert answer.answerable
        first_quotes[setting] = answer.citations[0].quote
    # Without the dictionary the encoder's nearest sentence (the ceasefire violations) came first.
    assert "الإعمار" in first_quotes["auto"] and "الإعمار" not in first_quotes["none"]


def test_what_was_read_is_kept_until_the_dictionary_changes(tmp_path: Path, encoder: LexicalEncoder,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from rag import bilingual

    source = write_dictd(tmp_path, "eng-ara", [("Meeting", ["الاجتماع"])])
    cache = tmp_path / "dictionary.json"
    first = load_dictionary(str(source), lambda text: encoder.features(text)[0], cache=cache)
    assert first is not None and first.lookup("meeting") and cache.exists()

    def unread(path: Path) -> dict[str, list[str]]:
        raise OSError("not read again")

    monkeypatch.setattr(bilingual, "read_dictd", unread)
    again = load_dictionary(str(source), lambda text: encoder.features(text)[0], cache=cache)
    assert again is not None and again.lookup("meeting") == first.lookup("meeting")  # from the cache
    write_dictd(tmp_path, "eng-ara", [("Meeting", ["الاجتماع"]), ("Ceasefire", ["وقف إطلاق النار"])])
    changed = load_dictionary(str(source), lambda text: encoder.features(text)[0], cache=cache)
    assert changed is not None and changed.lookup("meeting") == ()  # the file changed: read again (and failed)

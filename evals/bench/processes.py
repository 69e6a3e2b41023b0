"""``sanad bench processes``: one and two ``sanad serve`` processes on one PostgreSQL database and one Qdrant
server, under the same closed-loop clients on ``POST /v1/chat`` (each answer stored as a conversation turn), then
how long the background jobs take to move after the process running them is killed.

Setups, each on the same Qdrant server (the seeds indexed into it once):

* one process, the SQLite default for its state (the baseline: what the shared database costs);
* one process on PostgreSQL;
* two processes on PostgreSQL, the clients spread over them as a load balancer would (client k on process k mod 2).

Bring your own servers (``--database-url``, ``--qdrant-url``): the bench indexes into the Qdrant server and adds
tables to the database, nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from evals.bench.common import SEEDS, Report, pct, rss_mb
from evals.bench.load import _bin, _client, _cpu_s, _free_port, questions, stop_server, wait_ready


def _start(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _free_port()
    log = data_dir.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen([_bin("sanad"), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                                 str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log, 120)
    return proc, url, log


async def _drive(urls: list[str], qs: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``seconds``, client k on ``urls[k % len(urls)]``."""
    out: dict[str, Any] = {"lat": [], "errors": 0, "statuses": collections.Counter(), "exceptions": []}
    per = -(-clients // len(urls))
    limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
    https = [httpx.AsyncClient(base_url=u, timeout=60.0, limits=limits) for u in urls]
    try:
        t0 = time.perf_counter()
        until = t0 + seconds
        await asyncio.gather(*(_client(https[k % len(urls)], qs, k, until, out) for k in range(clients)))
        out["elapsed_s"] = time.perf_counter() - t0
    finally:
        for h in https:
            await h.aclose()
    return out


def _level(procs: list[subprocess.Popen[bytes]], urls: list[str], qs: list[str], clients: int,
           seconds: float) -> dict[str, Any]:
    cpu0, t0 = sum(_cpu_s(p.pid) for p in procs), time.perf_counter()
    res = asyncio.run(_drive(urls, qs, clients, seconds))
    wall = time.perf_counter() - t0
    lat = res["lat"]
    return {"clients": clients, "answers": len(lat), "answers_per_s": round(len(lat) / res["elapsed_s"], 1),
            "p50_ms": round(pct(lat, 0.5), 1), "p95_ms": round(pct(lat, 0.95), 1), "errors": res["errors"],
            "statuses": dict(res["statuses"]), "exceptions": res["exceptions"][:5],
            "servers_cpu_pct": round(100 * (sum(_cpu_s(p.pid) for p in procs) - cpu0) / wall),
            "servers_rss_mb": [round(rss_mb(p.pid)) for p in procs]}


def _jobs(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/readyz", timeout=10).json()["database"].get("jobs") or {})


def takeover(urls: list[str], procs: list[subprocess.Popen[bytes]], timeout: float = 120.0) -> dict[str, Any]:
    """Kill (SIGKILL) the process holding the jobs; seconds until the other says it holds them."""
    leader = next(i for i, u in enumerate(urls) if _jobs(u).get("this_process"))
    other = urls[1 - leader]
    procs[leader].kill()
    procs[leader].wait()
    t0 = time.perf_counter()
    while not _jobs(other).get("this_process"):
        if time.perf_counter() - t0 > timeout:
            return {"seconds": None, "note": f"not taken over within {timeout:g} s"}
        time.sleep(0.05)
    return {"seconds": round(time.perf_counter() - t0, 2)}


def run(out: Path, database_url: str, qdrant_url: str, clients: int = 8, seconds: float = 20.0,
        lease: float = 15.0, takeovers: int = 3) -> dict[str, Any]:
    rep = Report("processes", "Several service processes on one PostgreSQL database and one Qdrant server", out)
    qs = questions()
    tmp = Path(tempfile.mkdtemp(prefix="sanad-processes-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    base |= {"SANAD_QDRANT__URL": qdrant_url, "SANAD_SERVICE__RATE_LIMIT_PER_MINUTE": "0", "SANAD_API_KEYS": "",
             "SANAD_SERVICE__JOBS_LEASE_SECONDS": str(lease)}
    subprocess.run([_bin("sanad"), "index", str(SEEDS), "--data-dir", str(tmp / "index")], env=base, check=True,
                   capture_output=True)
    shared = base | {"SANAD_DATABASE__URL": database_url}
    setups = [("1 process, SQLite state", base, 1), ("1 process, PostgreSQL state", shared, 1),
              ("2 processes, PostgreSQL state", shared, 2)]
    rows, results = [], {}
    for name, env, n in setups:
        started = [_start(env, tmp / f"{name.split(',')[0].replace(' ', '')}-{i}") for i in range(n)]
        procs, urls = [s[0] for s in started], [s[1] for s in started]
        try:
            _level(procs, urls, qs, clients, 3.0)  # warm-up
            r = _level(procs, urls, qs, clients, seconds)
        finally:
            for p in procs:
                stop_server(p)
        results[name] = r
        rows.append([name, r["answers_per_s"], r["p50_ms"], r["p95_ms"], r["errors"], r["servers_cpu_pct"],
                     " + ".join(str(m) for m in r["servers_rss_mb"])])
    rep.table(f"{clients} clients, {seconds:g} s, POST /v1/chat (each answer stored as a turn)",
              ["setup", "answers/s", "p50 ms", "p95 ms", "errors", "servers CPU %", "RSS MB"], rows)
    moves: list[dict[str, Any]] = []
    for _ in range(takeovers):
        started = [_start(shared, tmp / f"takeover-{len(moves)}-{i}") for i in range(2)]
        procs, urls = [s[0] for s in started], [s[1] for s in started]
        try:
            moves.append(takeover(urls, procs))
        finally:
            for p in procs:
                if p.poll() is None:
                    stop_server(p)
    rep.table(f"The jobs moving after the process running them is killed (SIGKILL; lease {lease:g} s, renewed "
              f"every {lease / 3:g} s)", ["run", "seconds until the other process runs them"],
              [[i + 1, m.get("seconds")] for i, m in enumerate(moves)])
    rep.data.update(results=results, takeovers=moves, clients=clients, seconds=seconds, lease_seconds=lease,
                    questions=len(qs))
    rep.write()
    return rep.data

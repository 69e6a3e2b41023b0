"""``sanad bench load``: ``sanad serve`` on 127.0.0.1 under concurrent ``POST /v1/chat`` clients.

The seeds are indexed into a temporary data dir with ``sanad index``, the server is started
with the rate limit off, warmed up, then an httpx.AsyncClient load generator (in this
process, on the same 2 cores) runs 1/8/32/64 closed-loop clients for a bounded time each,
asking a rotating set of the gold set's Arabic questions. Server CPU% comes from
/proc/<pid>/stat, RSS from /proc/<pid>/status. One extra 8-client run is profiled with
py-spy (``--idle``, raw collapsed stacks) and the samples are classified.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from evals.bench.common import GOLD, SEEDS, Report, pct, rss_mb
from evals.gold import load_gold

TARGET_P50_MS, TARGET_P95_MS, TARGET_RPS = 30.0, 100.0, 100.0
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def stop_server(server: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until ``url``/readyz answers 200; a server that exits or takes longer fails with its log's tail."""
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise RuntimeError(f"server did not become ready; log: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def questions() -> list[str]:
    return [i.question for i in load_gold(GOLD) if i.lang == "ar" and not i.turns]


async def _client(http: httpx.AsyncClient, qs: list[str], offset: int, until: float, out: dict[str, Any]) -> None:
    i = offset
    while time.perf_counter() < until:
        q = qs[i % len(qs)]
        i += 7
        t = time.perf_counter()
        try:
            r = await http.post("/v1/chat", json={"question": q})
            ok = r.status_code == 200 and "answer" in r.json()
        except Exception as exc:  # counted, never raised: the run goes on
            ok = False
            out["exceptions"].append(repr(exc)[:200])
            r = None
        dt = (time.perf_counter() - t) * 1000
        if ok:
            out["lat"].append(dt)
        else:
            out["errors"] += 1
            if r is not None:
                out["statuses"][r.status_code] += 1


async def drive(url: str, qs: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``seconds``; latencies of the 200 answers."""
    out: dict[str, Any] = {"lat": [], "errors": 0, "statuses": collections.Counter(), "exceptions": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        t0 = time.perf_counter()
        until = t0 + seconds
        await asyncio.gather(*(_client(http, qs, k, until, out) for k in range(clients)))
        out["elapsed_s"] = time.perf_counter() - t0
    return out


def level(url: str, pid: int, qs: list[str], clients: int, seconds: float) -> dict[str, Any]:
    cpu0, gen0, t0 = _cpu_s(pid), time.process_time(), time.perf_counter()
    res = asyncio.run(drive(url, qs, clients, seconds))
    wall = time.perf_counter() - t0
    lat = res["lat"]
    return {
        "clients": clients,
        "answers": len(lat),
        "answers_per_s": len(lat) / res["elapsed_s"],
        "p50_ms": pct(lat, 0.5),
        "p95_ms": pct(lat, 0.95),
        "p99_ms": pct(lat, 0.99),
        "errors": res["errors"],
        "statuses": dict(res["statuses"]),
        "exceptions": res["exceptions"][:5],
        "server_cpu_pct": 100 * (_cpu_s(pid) - cpu0) / wall,
        "loadgen_cpu_pct": 100 * (time.process_time() - gen0) / wall,
        "server_rss_mb": rss_mb(pid),
    }


def classify(raw: Path) -> dict[str, Any]:
    """Share of py-spy samples by what the thread was doing (collapsed stacks, ``--idle``)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1].split(" (")[0].split(".")[-1]
        where = frames[-1]
        loop = any("run_forever" in f or "uvicorn" in f for f in frames)
        if leaf == "locked" and "state.py" in where:
            kind = "waiting for the store lock (LockedClient)"
        elif leaf in ("select", "poll", "_run_once") and loop:
            kind = "event loop idle (waiting for I/O)"
        elif leaf in ("wait", "get", "_worker") and not any("rag/" in f for f in frames):
            kind = "worker thread idle (waiting for work)"
        elif any("rag/edge.py" in f or "qdrant" in f for f in frames):
            kind = "store query (qdrant-edge, under the lock)"
        elif any("rag/" in f for f in frames):
            kind = "Sanad analysis / answering (rag/, pure Python)"
        elif any("conversations.py" in f for f in frames):
            kind = "conversation store (SQLite write per answer)"
        elif loop:
            kind = "event loop busy (HTTP, middleware, JSON, pydantic)"
        else:
            kind = "other"
        counts[kind] += int(n)
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.most_common()}


def hot_functions(raw: Path, top: int = 12) -> list[tuple[str, float]]:
    """Leaf functions by share of non-idle samples."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stack.split(";")[-1]] += int(n)
    idle = {"select", "wait", "get", "_worker", "poll", "locked"}
    busy = {k: v for k, v in counts.items() if k.split(" (")[0].split(".")[-1] not in idle}
    total = sum(busy.values()) or 1
    return [(k, v / total) for k, v in sorted(busy.items(), key=lambda kv: -kv[1])[:top]]


def run(out: Path, levels: list[int], seconds: float = 15.0, profile: bool = True) -> dict[str, Any]:
    rep = Report("load", "Service load: sanad serve, POST /v1/chat", out)
    qs = questions()
    tmp = Path(tempfile.mkdtemp(prefix="sanad-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    env.update(SANAD_SERVICE__RATE_LIMIT_PER_MINUTE="0", SANAD_API_KEYS="", SANAD_DATA_DIR=str(tmp))
    subprocess.run(
        [_bin("sanad"), "index", str(SEEDS), "--data-dir", str(tmp)], env=env, check=True, capture_output=True
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [_bin("sanad"), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    results: list[dict[str, Any]] = []
    try:
        wait_ready(url, server, tmp / "server.log", 60)
        rss_start = rss_mb(server.pid)
        level(url, server.pid, qs, 8, 3.0)  # warm-up
        rss_warm = rss_mb(server.pid)
        for c in levels:
            r = level(url, server.pid, qs, c, seconds)
            results.append(r)
            rep.note(
                f"{c:>3} clients: {r['answers_per_s']:.0f} answers/s, p50 {r['p50_ms']:.1f} ms, "
                f"p95 {r['p95_ms']:.1f} ms, errors {r['errors']}, server CPU {r['server_cpu_pct']:.0f}%"
            )
        rss_end = rss_mb(server.pid)
        prof: dict[str, Any] = {}
        if profile and shutil.which(_bin("py-spy")):
            raw = out / "load_profile.txt"
            out.mkdir(parents=True, exist_ok=True)
            spy = subprocess.Popen(
                [
                    _bin("py-spy"),
                    "record",
                    "-d",
                    "10",
                    "-r",
                    "100",
                    "--idle",
                    "--format",
                    "raw",
                    "-o",
                    str(raw),
                    "--pid",
                    str(server.pid),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            prof_level = level(url, server.pid, qs, 8, 11.0)
            spy_out = spy.communicate(timeout=60)[0]
            if raw.exists():
                prof = {
                    "file": str(raw),
                    "level": prof_level,
                    "by_activity": classify(raw),
                    "hot_leaf_functions": hot_functions(raw),
                }
            else:
                prof = {"error": spy_out[-1000:]}
    finally:
        stop_server(server)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    rep.data.update(
        levels=results,
        rss_mb={"started": rss_start, "after_warmup": rss_warm, "after_runs": rss_end},
        seconds_per_level=seconds,
        questions=len(qs),
        profile=prof,
    )
    cols = [
        "answers_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "errors",
        "server_cpu_pct",
        "loadgen_cpu_pct",
        "server_rss_mb",
    ]
    rep.table(
        f"POST /v1/chat, {seconds:g} s per level, {len(qs)} rotating Arabic gold questions",
        ["clients", *cols],
        [[r["clients"], *(r[c] for c in cols)] for r in results],
        digits=1,
    )
    rep.note(
        f"Server RSS: {rss_start:.0f} MB at start, {rss_warm:.0f} MB after warm-up, {rss_end:.0f} MB after all "
        f"levels. Errors in total: {sum(r['errors'] for r in results)}."
    )
    at8 = next((r for r in results if r["clients"] == 8), None)
    best = max(results, key=lambda r: r["answers_per_s"]) if results else None
    rows = []
    if at8:
        rows += [
            ["warm p50 at 8 clients (ms)", f"< {TARGET_P50_MS:g}", at8["p50_ms"], TARGET_P50_MS / at8["p50_ms"]],
            ["warm p95 at 8 clients (ms)", f"< {TARGET_P95_MS:g}", at8["p95_ms"], TARGET_P95_MS / at8["p95_ms"]],
        ]
    if best:
        rows.append(
            [
                f"sustained answers/s (best: {best['clients']} clients)",
                f">= {TARGET_RPS:g}",
                best["answers_per_s"],
                best["answers_per_s"] / TARGET_RPS,
            ]
        )
    rep.table(
        "Targets (factor > 1: met by that factor; < 1: missed)",
        ["target", "goal", "measured", "factor"],
        rows,
        digits=2,
    )
    if prof.get("by_activity"):
        acts = prof["by_activity"]
        busy = sum(v for k, v in acts.items() if "idle" not in k) or 1.0
        rep.table(
            f"py-spy --idle, 10 s at 8 clients ({prof['level']['answers_per_s']:.0f} answers/s while sampled)",
            ["activity", "share of all thread samples", "share of non-idle samples"],
            [[k, v, None if "idle" in k else v / busy] for k, v in acts.items()],
        )
        rep.table(
            "Hottest leaf functions (share of busy samples)",
            ["function", "share"],
            [[k, v] for k, v in prof["hot_leaf_functions"]],
        )
    elif prof:
        rep.note(f"py-spy failed: {prof.get('error')}")
    rep.write()
    return rep.data

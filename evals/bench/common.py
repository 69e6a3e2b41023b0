"""Shared pieces of the ``sanad bench`` commands: machine description, percentiles, tables, output files."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "evals" / "bench" / "results"
SEEDS = ROOT / "seeds"
GOLD = ROOT / "evals" / "gold" / "seeds.jsonl"
XQUAD_DIR = Path("/work/shared/datasets/xquad")

console = Console()


def machine() -> dict[str, Any]:
    """Cores, RAM, CPU model, Python: printed and stored with every result."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(ram, 1),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cores']} cores, {m['ram_gb']} GB RAM, {m['cpu']}, Python {m['python']} "
        f"(load average {m['loadavg_1m_at_start']} at start)"
    )


def pct(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process from /proc (MB)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def du_mb(path: Path) -> float:
    """Allocated size on disk (MB) of everything under ``path``."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{digits}f}"
    return str(v)


class Report:
    """One benchmark's output: tables printed with rich, then JSON + Markdown under ``out``."""

    def __init__(self, name: str, title: str, out: Path) -> None:
        self.name, self.title, self.out = name, title, out
        self.machine = machine()
        self.sections: list[str] = []
        self.data: dict[str, Any] = {"benchmark": name, "machine": self.machine}
        self.t0 = time.perf_counter()
        console.rule(f"[bold]{title}")
        console.print(f"machine: {machine_line(self.machine)}")

    def table(self, title: str, headers: list[str], rows: list[list[Any]], digits: int = 3) -> None:
        t = Table(title=title, title_justify="left")
        for h in headers:
            t.add_column(h, justify="left" if h == headers[0] else "right")
        cells = [[fmt(c, digits) for c in r] for r in rows]
        for r in cells:
            t.add_row(*r)
        console.print(t)
        md = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        md += ["| " + " | ".join(r) + " |" for r in cells]
        self.sections.append("\n".join(md) + "\n")

    def note(self, text: str) -> None:
        console.print(text)
        self.sections.append(text + "\n")

    def write(self) -> tuple[Path, Path]:
        self.out.mkdir(parents=True, exist_ok=True)
        self.data["runtime_s"] = round(time.perf_counter() - self.t0, 1)
        jpath, mpath = self.out / f"{self.name}.json", self.out / f"{self.name}.md"
        jpath.write_text(json.dumps(self.data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        head = f"## {self.title}\n\nMachine: {machine_line(self.machine)}. Runtime {self.data['runtime_s']} s.\n"
        mpath.write_text(head + "\n" + "\n".join(self.sections), encoding="utf-8")
        console.print(f"[dim]wrote {jpath} and {mpath} ({self.data['runtime_s']} s)[/dim]")
        return jpath, mpath


def plot_latency_vs_size(runs: list[dict[str, Any]], out: Path, group: str = "engine",
                         ylabel: str = "engine.search latency (ms)",
                         title: str = "Sanad query latency vs corpus size (embedded store)") -> Path | None:
    """p50/p95 latency against corpus size, one line pair per ``group`` value, log-log, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for eng in sorted({r[group] for r in runs}):
        rs = sorted((r for r in runs if r[group] == eng), key=lambda r: r["size"])
        xs = [r["size"] for r in rs]
        ax.plot(xs, [r["p50_ms"] for r in rs], "o-", label=f"{eng} p50")
        ax.plot(xs, [r["p95_ms"] for r in rs], "s--", label=f"{eng} p95")
    ax.axhline(150, color="grey", lw=0.8, ls=":", label="target p95 150 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in collection")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / "latency_vs_size.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path

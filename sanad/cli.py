"""``sanad index``, ``sanad ask`` and friends."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rag.settings import Settings
from sanad.remote import RemoteError, SanadClient, Server, running_server
from service.sources import also_in_text, shorten

if TYPE_CHECKING:  # the engine pulls in llama-index and qdrant-client: imported by the commands that need it
    from index.ingest import Indexer
    from index.readers import IndexSummary
    from rag.engine import Sanad
    from rag.models import Answer, SearchFilters

app = typer.Typer(
    help="Sanad (سند): cited answers over Arabic news articles.", no_args_is_help=True, pretty_exceptions_enable=False
)
console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="State folder (default: SANAD_DATA_DIR or ./data).")]


def progress_bar(disable: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True, disable=disable)


def _count_lines(files: list[Path]) -> int | None:
    """Articles in the JSONL files (one per non-empty line), for the progress bar's ETA."""
    total = 0
    try:
        for f in files:
            if f.suffix.lower() == ".jsonl":
                with f.open("rb") as fh:
                    total += sum(1 for line in fh if line.strip())
            else:
                total += 1
    except OSError:
        return None
    return total


def load_settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir else Settings()


def open_engine(settings: Settings, rebuild: bool = False) -> Sanad:
    from rag.engine import Sanad
    from rag.store import StoreError

    try:
        return Sanad.open(settings, rebuild=rebuild)
    except StoreError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def index(
    paths: Annotated[list[str], typer.Argument(
        help="Files, folders or feed URLs: .txt .md .html .json .jsonl .csv, RSS/Atom (.rss .atom .xml, or an "
        "http(s):// address), .zip archives of these.")],
    fields: Annotated[str | None, typer.Option(
        "--fields", help="Record fields (JSON, JSONL, CSV) under other names, as target=name pairs, e.g. "
        "text=story_body,title=hed,date=pub_time (targets: id title text date source url author; "
        "default: SANAD_INDEX__FIELDS).")] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Drop the stored index first and build it afresh with the current settings "
        "(after changing a setting the index records).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Index articles (idempotent: unchanged ones are skipped, changed ones replaced)."""
    from index.ingest import Indexer
    from index.readers import iter_files
    from rag.settings import IndexSettings

    urls = [p for p in paths if p.lower().startswith(("http://", "https://"))]
    local = [Path(p) for p in paths if p not in urls]
    missing = [p for p in local if not p.exists()]
    if missing:
        for p in missing:
            err.print(f"[red]error:[/red] {p}: no such file or folder")
        raise typer.Exit(2)
    settings = load_settings(data_dir)
    if fields is not None:
        try:
            IndexSettings.parse_fields(fields)
        except ValueError as exc:
            err.print(f"[red]error:[/red] --fields: {exc}")
            raise typer.Exit(2) from None
        settings.index.fields = fields
    server = running_server(settings)
    if server is not None:
        refused = ("rebuild the index" if rebuild else "index a feed URL" if urls
                   else "index with --fields" if fields else None)
        if refused:
            err.print(f"[red]error:[/red] a Sanad server at {server.url} (pid {server.pid}) holds {settings.data_dir}: "
                      f"stop it to {refused}.")
            raise typer.Exit(2)
        _index_remote(server, settings, local)
        return
    if "threads" not in settings.embed.model_fields_set:
        # Indexing is throughput work: every core for the encoder (measured 1.65x faster on 2 cores). The
        # server keeps one thread, for latency under concurrent questions (NOTES).
        settings.embed.threads = max(1, min(os.cpu_count() or 1, 8))
    engine = open_engine(settings, rebuild=rebuild)
    try:
        # Two passes: every article searchable (lexically) first, then the dense vectors, resumably.
        indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings.index, defer_dense=True,
                          feed_timeout=settings.feeds.timeout)
        summary = _index_here(indexer, list(iter_files(local)), urls)
        ok = _print_summary(summary)
        _fill_dense(indexer)
    finally:
        engine.close()
    if not ok:
        raise typer.Exit(1)


def _index_here(indexer: Indexer, files: list[Path], urls: list[str]) -> IndexSummary:
    """The lexical pass, with a progress bar: files are counted, or articles when a file holds many."""
    from index.readers import COLLECTIONS

    # A collection (JSONL, JSON, CSV, a feed, an archive) holds an unknown number of articles: then articles
    # are counted (ahead of time for JSONL only).
    kinds = {f.suffix.lower() for f in files}
    streams = bool(urls or kinds & COLLECTIONS)
    total: int | None = len(files)
    if streams:
        total = None if urls or kinds & (COLLECTIONS - {".jsonl"}) else _count_lines(files)
    with progress_bar(disable=len(files) + len(urls) < 2 and not streams) as progress:
        task = progress.add_task("indexing articles" if streams else "indexing", total=total)
        return indexer.index_paths(
            [], files=files, urls=urls, on_item=(lambda _: progress.advance(task)) if streams else None,
            on_file=None if streams else (lambda _: progress.advance(task)))


_LOG_EVERY = 60.0  # seconds between progress lines when stderr is not a terminal (a log file, nohup)


def progress_line(label: str, done: int, total: int, elapsed: float) -> str:
    """``dense vectors: 1,200 / 67,085 (1.8%), 4.1/s, ETA 4h 28m``: progress for a log, where no bar is drawn."""
    rate = done / elapsed if elapsed > 0 else 0.0
    line = f"{label}: {done:,} / {total:,} ({100 * done / total:.1f}%), {rate:.1f}/s" if total else f"{label}: {done:,}"
    if rate > 0 and total > done:
        minutes = round((total - done) / rate / 60)
        line += f", ETA {minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f", ETA {minutes}m"
    return line


def _log_progress(label: str, total: int) -> Callable[[int], None]:
    """A callback advancing by ``n`` that prints a progress line every ``_LOG_EVERY`` seconds: rich draws no
    bar when stderr is not a terminal, and a run of hours in the background would otherwise say nothing."""
    start = last = time.monotonic()
    done = 0

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= _LOG_EVERY:
            last = now
            err.print(progress_line(label, done, total, now - start), highlight=False)

    return advance


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fill_dense(indexer: Indexer) -> None:
    """The dense pass, with progress and ETA. Interrupted, it leaves a searchable index; the next run goes on."""
    pending = indexer.store.count_dense_pending()
    if not pending or indexer.embedder is None:
        return
    # `docker stop`, systemd and `kill` send SIGTERM; a background job from a script ignores SIGINT. Either
    # way the pass should end as Ctrl-C does: the batch in hand dropped, the store consistent, the reason said.
    # Installed before the line below, so whoever reads that line can already stop the pass this way.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        err.print(f"[dim]searchable now (lexical); dense vectors for {pending} chunks follow. Ctrl-C stops safely: "
                  "`sanad index` again continues where it stopped.[/dim]")
        with progress_bar() as progress:
            task = progress.add_task("dense vectors", total=pending)
            log = None if err.is_terminal else _log_progress("dense vectors", pending)

            def advance(n: int) -> None:
                progress.advance(task, n)
                if log is not None:
                    log(n)

            done = indexer.fill_dense(batch=16, on_batch=advance)
    except KeyboardInterrupt:
        left = indexer.store.count_dense_pending()
        err.print(f"[yellow]stopped: {left} chunks still without dense vectors (they are found by their words "
                  "until they have them); run `sanad index` again to go on.[/yellow]")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    left = indexer.store.count_dense_pending()
    if left:
        err.print(f"[yellow]{left} chunks have no dense vector (the encoder cannot run here): they are found "
                  "by their words only.[/yellow]")
    else:
        err.print(f"[dim]dense vectors: {done} chunks done[/dim]")


_SKIPPED_LISTED = 10  # more skipped items than this: the first few, then a count per reason


def _print_summary(summary: IndexSummary) -> bool:
    """Print what indexing did; False when it indexed nothing and skipped something (exit 1)."""
    skipped = summary.skipped
    listed = skipped if len(skipped) <= _SKIPPED_LISTED else skipped[:5]
    # soft_wrap: never broken at the console width (80 columns in a log file), so a path stays whole and greppable.
    for s in listed:
        err.print(f"[yellow]skipped[/yellow] {escape(s.path)}: {escape(s.reason)}", soft_wrap=True)
    if len(listed) < len(skipped):
        # "too large (123 bytes > 100)" and "too large (456 bytes > 100)" are one reason.
        reasons = Counter(re.sub(r"\s*\(.*?\)", "", s.reason).strip() or s.reason for s in skipped)
        err.print(f"[yellow]… and {len(skipped) - len(listed)} more skipped; all {len(skipped)} by reason:[/yellow]")
        for reason, n in reasons.most_common():
            err.print(f"  {n} skipped: {escape(reason)}", soft_wrap=True)
    console.print(
        f"{summary.documents} documents ({summary.added} added, {summary.updated} updated, "
        f"{summary.unchanged} unchanged), {summary.chunks} chunks, {len(skipped)} skipped, "
        f"{summary.seconds:.2f} s"
    )
    return not (skipped and not summary.documents)


def _via(server: Server, settings: Settings) -> None:
    err.print(f"[dim]via the Sanad server at {server.url} (pid {server.pid}), which holds {settings.data_dir}[/dim]")


def _remote_failed(exc: RemoteError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1 if exc.status and exc.status >= 500 else 2)


def _index_remote(server: Server, settings: Settings, paths: list[Path]) -> None:
    from index.readers import iter_files

    _via(server, settings)
    files = list(iter_files(paths))
    with SanadClient(server.url, settings.client_api_key) as client, progress_bar(disable=len(files) < 2) as bar:
        task = bar.add_task("indexing", total=len(files))
        try:
            summary = client.index_files(files, on_file=lambda _: bar.advance(task))
        except RemoteError as exc:
            raise _remote_failed(exc) from None
    if not _print_summary(summary):
        raise typer.Exit(1)


def print_answer(answer: Answer) -> None:
    style = "green" if answer.answerable else "yellow"
    title = "answer" + (" (degraded: LLM unavailable)" if answer.degraded else "")
    console.print(Panel(answer.answer, title=title, border_style=style))
    if answer.rewritten_question:
        console.print(f"[dim]searched as: {answer.rewritten_question}[/dim]")
    for c in answer.citations:
        where = ", ".join(x for x in (c.source, c.date) if x)
        console.print(f"[bold][{c.n}][/bold] {escape(c.title)} [dim]({escape(where + ', ' if where else '')}"
                      f"{c.doc_id}, {c.start}-{c.end})[/dim]")
        console.print(f"    {escape(c.quote)}")
        if also := also_in_text(c, answer.language):
            console.print(f"    [dim]{escape(also)}[/dim]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="An Arabic or English question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer object as JSON.")] = False,
    top_k: Annotated[int | None, typer.Option(min=1, max=50)] = None,
    doc: Annotated[list[str] | None, typer.Option("--doc", help="Only search these document ids.")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Only articles dated on or after this day (YYYY-MM-DD).")]
    = None,
    until: Annotated[str | None, typer.Option("--to", help="Only articles dated on or before this day (YYYY-MM-DD).")]
    = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Continue this conversation.")] = None,
    cont: Annotated[bool, typer.Option("--continue", "-c", help="Continue the last conversation.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Answer a question from the indexed articles, with cited passages.

    Each answer is part of a conversation (its id is printed): `-c` asks a follow-up in the last one.
    """

    if not question.strip():
        err.print("[red]error:[/red] the question is empty")
        raise typer.Exit(2)
    settings = load_settings(data_dir)
    if cont and session is None:
        session = _last_session(settings)
        if session is None:
            err.print("[red]error:[/red] there is no earlier conversation to continue: ask without -c first")
            raise typer.Exit(2)
    filters = _filters(doc, since, until)
    server = running_server(settings)
    if server is not None:
        _via(server, settings)
        try:
            with SanadClient(server.url, settings.client_api_key) as client:
                answer = client.ask(question, session, top_k, filters)
        except RemoteError as exc:
            raise _remote_failed(exc) from None
    else:
        answer = _ask_here(settings, question, session, top_k, filters)
    if answer.session_id:
        _remember_session(settings, answer.session_id)
    if as_json:
        sys.stdout.write(json.dumps(answer.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n")
    else:
        print_answer(answer)
        if answer.session_id:  # on stderr: stdout stays the answer alone
            err.print(f"[dim]conversation {escape(answer.session_id)} · follow up with `sanad ask -c …` "
                      f"or `sanad ask -s {escape(answer.session_id)} …`[/dim]", highlight=False, soft_wrap=True)


def _filters(doc: list[str] | None, since: str | None, until: str | None) -> SearchFilters | None:
    from datetime import date

    from rag.models import SearchFilters

    days: list[date | None] = []
    for name, value in (("--from", since), ("--to", until)):
        try:
            days.append(date.fromisoformat(value) if value else None)
        except ValueError:
            err.print(f"[red]error:[/red] {name} {value!r}: give a day as YYYY-MM-DD")
            raise typer.Exit(2) from None
    if days[0] and days[1] and days[0] > days[1]:
        err.print(f"[red]error:[/red] --from {since} is after --to {until}")
        raise typer.Exit(2)
    if not (doc or days[0] or days[1]):
        return None
    return SearchFilters(doc_ids=doc or None, date_from=days[0], date_to=days[1])


def _ask_here(settings: Settings, question: str, session: str | None, top_k: int | None,
              filters: SearchFilters | None) -> Answer:
    """The answer from this process, through the service's conversation path (stored the same way)."""
    from service.answering import Conversations
    from service.conversations import ConversationStore
    from service.errors import APIError

    engine = open_engine(settings)
    store = ConversationStore.open(settings.data_dir, settings.service.max_turns, settings.database.url)
    try:
        if engine.store.count_chunks() == 0:
            err.print("[yellow]The index is empty: run `sanad index seeds` first.[/yellow]")
        chat = Conversations(engine, store, settings)
        try:
            return chat.answer(chat.prepare(question, session), top_k, filters)
        except APIError as exc:
            err.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
    finally:
        store.close()
        engine.close()


_LAST_SESSION = "cli-last-session"


def _last_session(settings: Settings) -> str | None:
    try:
        return (settings.data_dir / _LAST_SESSION).read_text().strip() or None
    except OSError:
        return None


def _remember_session(settings: Settings, session_id: str) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / _LAST_SESSION).write_text(session_id)
    except OSError as exc:  # the answer is shown anyway; only -c will not find it
        err.print(f"[yellow]could not remember the conversation for -c: {exc}[/yellow]")


@app.command()
def documents(
    as_json: Annotated[bool, typer.Option("--json", help="Print the documents as a JSON array.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List indexed documents with their chunk counts."""
    settings = load_settings(data_dir)
    server = running_server(settings)
    if server is not None:
        _via(server, settings)
        try:
            with SanadClient(server.url, settings.client_api_key) as client:
                docs = client.documents()
        except RemoteError as exc:
            raise _remote_failed(exc) from None
    else:
        from rag.store import public_record

        engine = open_engine(settings)
        try:
            docs = [public_record(r) for r in engine.store.list_documents()]
        finally:
            engine.close()
    if as_json:
        sys.stdout.write(json.dumps(docs, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("id", "title", "date", "chunks")
    for d in docs:
        table.add_row(d["doc_id"], shorten(d.get("title", "")), d.get("date") or "", str(d.get("chunks", 0)))
    console.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default: SANAD_SERVICE__HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SANAD_SERVICE__PORT or 8000).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Start the chat service: HTTP API, web chat page, OpenAI-compatible endpoint, Slack bot if configured."""
    from service.server import serve as run

    settings = load_settings(data_dir)
    run(settings, host or settings.service.host, port if port is not None else settings.service.port)


@app.command("eval")
def eval_(
    gold: Annotated[Path | None, typer.Option(help="Gold JSONL (default: the project's seeds gold set).")] = None,
    corpus: Annotated[list[Path] | None, typer.Option(help="Files or folders to index into a fresh store.")] = None,
    url: Annotated[str | None, typer.Option(help="Evaluate a running Sanad service instead.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="SANAD_EVAL_API_KEY", help="Bearer key for --url.")] = None,
    report: Annotated[Path | None, typer.Option(help="Report folder (default: <data-dir>/evals/<time>).")] = None,
    baseline: Annotated[Path | None, typer.Option(help="A previous report.json to compare with.")] = None,
    thresholds: Annotated[
        Path | None,
        typer.Option(help="Thresholds TOML (default: evals/thresholds.toml for the seeds gold set with --split test, "
                          "none otherwise)."),
    ] = None,
    judge: Annotated[bool, typer.Option(help="Add a model-judged faithfulness score (needs an LLM).")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
    split: Annotated[str | None, typer.Option(help="Only items of this split: dev or test.")] = None,
    reader_pairs: Annotated[int | None, typer.Option(
        min=0, help="Questions per language for the reader's pair AUC (XQuAD test half; default 150 with the "
                    "project's gold set, 0 otherwise).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Check answers against gold facts; exit non-zero when a threshold is missed."""
    from evals.release import EvalError, EvalPlan, evaluate
    from evals.report import summary_table

    settings = load_settings(data_dir)
    plan = EvalPlan(gold=gold, corpus=corpus, url=url, api_key=api_key, report=report, baseline=baseline,
                    thresholds=thresholds, judge=judge, limit=limit, split=split, reader_pairs=reader_pairs)
    if judge and not settings.llm.enabled:
        err.print("[yellow]--judge needs an LLM (SANAD_LLM__BASE_URL); skipped.[/yellow]")
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=None)
        try:
            run = evaluate(plan, settings, on_start=lambda n: progress.update(task, total=n),
                           on_item=lambda _: progress.advance(task))
        except EvalError as exc:
            progress.stop()
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    console.print(summary_table(run.summary))
    if run.comparison is not None:
        console.print(f"against baseline: {len(run.comparison['better'])} items better, "
                      f"{len(run.comparison['worse'])} worse")
        for c in run.comparison["worse"]:
            console.print(f"  [red]worse[/red] {c['id']}: {', '.join(c['changes'])}")
    console.print(f"report: {run.folder / 'report.md'}")
    for m in run.missed:
        err.print(f"[red]threshold missed:[/red] {m}")
    if run.missed:
        raise typer.Exit(1)


@app.command("squad-convert")
def squad_convert(
    squad: Annotated[Path, typer.Argument(help="A SQuAD-format JSON file (paragraphs, questions).")],
    out: Annotated[Path, typer.Option(help="Output folder for corpus.jsonl and gold.jsonl.")],
    questions: Annotated[
        Path | None, typer.Option(help="Parallel SQuAD file whose questions are asked instead (e.g. English).")
    ] = None,
    leave_out: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Share of paragraphs kept out of the corpus; their questions become unanswerable."
    )] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the leave-out and of the dev/test split.")] = 13,
    drop_answer: Annotated[float, typer.Option(
        min=0.0, max=0.9,
        help="Share of the paragraphs kept that lose one question's answer sentence; questions left "
             "without their answer become unanswerable.",
    )] = 0.0,
) -> None:
    """Turn SQuAD/XQuAD into a corpus (each paragraph a document) and a gold file split into dev and test."""
    from evals.squad import convert

    corpus_path, gold_path = convert(squad, out, questions, leave_out=leave_out, seed=seed, drop_answer=drop_answer)
    console.print(
        f"corpus: {corpus_path}\ngold: {gold_path}\nrun: sanad eval --gold {gold_path} --corpus {corpus_path}"
    )


@app.command("train-reader")
def train_reader(
    out: Annotated[Path, typer.Option(
        help="Run folder: config.json, checkpoint.pt, history.json, best weights."
    )] = Path("runs/reader-cross-1"),
    kind: Annotated[str, typer.Option(
        help="cross (the shipped reader) or late (late interaction, for comparison)."
    )] = "cross",
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: Annotated[int, typer.Option()] = 13,
    export: Annotated[Path | None, typer.Option(
        help="Write the best epoch here as the int8 ONNX reader (e.g. rag/data/reader-cross-1.onnx)."
    )] = None,
    cache: Annotated[Path, typer.Option(help="late: folder caching the encoder's token states.")] = Path(
        ".cache/reader-states"
    ),
    english_paragraphs: Annotated[bool, typer.Option(
        help="cross: also train on XQuAD's English paragraphs (train half; dev and test stay Arabic)."
    )] = False,
    name: Annotated[str, typer.Option(help="cross: the exported reader's name (answers' metadata, /readyz).")]
    = "reader-cross-1",
    hard_negatives: Annotated[int, typer.Option(
        min=0, help="cross: per question, this many of the answerer's best-ranked sentences of other paragraphs "
        "(retrieved over the training paragraphs) as negatives.")] = 0,
    swapped: Annotated[int, typer.Option(
        min=0, help="cross: per Arabic question, this many copies with one of the words its answer's sentence "
        "holds swapped for another word of its article, against that sentence as negatives.")] = 0,
) -> None:
    """Train the reader from the bundled encoder's weights (needs the train extra: torch, CPU build). Seeded;
    run it again with the same --out to resume after the last finished epoch."""
    if kind == "cross":
        from evals.reader.cross import CrossConfig, export_best, train_cross

        config = CrossConfig(seed=seed, epochs=epochs, english_paragraphs=english_paragraphs, name=name,
                             hard_negatives=hard_negatives, swapped=swapped)
        train_cross(out, config, log=console.print)
        if export is not None:
            console.print(f"exported: {export_best(out, export)}")
    elif kind == "late":
        from evals.reader.train import TrainConfig, train

        path = train(out, TrainConfig(seed=seed, epochs=epochs), cache, log=console.print)
        console.print(f"best epoch on dev: {path}")
    else:
        raise typer.BadParameter("--kind is cross or late")


def _add_feedback_commands() -> None:
    from service.slack.cli import feedback_app

    app.add_typer(feedback_app, name="feedback", help="Answer feedback from the Slack bot.")


_add_feedback_commands()


def _add_bench_commands() -> None:
    from evals.bench.cli import bench_app

    app.add_typer(bench_app, name="bench", help="Benchmarks (retrieval, pipeline, scale, load).")


_add_bench_commands()

if __name__ == "__main__":
    app()

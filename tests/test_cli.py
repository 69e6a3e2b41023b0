"""The ``sanad`` command line, run the way a user runs it, on a data folder of its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.engine import Sanad
from rag.settings import Settings
from sanad.cli import app
from tests.conftest import REFUSAL_AR, SEED_IDS, SEEDS, read_seed

runner = CliRunner()


def sanad(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    flat = lambda s: " ".join(s.split())  # noqa: E731 - rich wraps long lines
    return result.exit_code, flat(result.stdout), flat(result.stderr)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the seeds indexed once through the CLI."""
    folder = tmp_path_factory.mktemp("cli") / "data"
    code, out, err = sanad("index", str(SEEDS), "--data-dir", str(folder))
    assert code == 0, err
    assert re.search(r"\b5 documents \(5 added, 0 updated, 0 unchanged\), \d+ chunks, 0 skipped", out), out
    return folder


def test_index_twice_reports_everything_unchanged(data_dir: Path) -> None:
    code, out, _ = sanad("index", str(SEEDS), "--data-dir", str(data_dir))
    assert code == 0
    assert "5 documents (0 added, 0 updated, 5 unchanged)" in out


def test_documents_lists_the_indexed_articles(data_dir: Path) -> None:
    code, out, _ = sanad("documents", "--data-dir", str(data_dir))
    assert code == 0
    assert all(doc_id in out for doc_id in SEED_IDS)


def test_ask_json_gives_the_answer_with_citations(data_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "من يرأس وفد حماس في مفاوضات القاهرة؟", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answerable"] is True and answer["language"] == "ar"
    assert "خليل الحية" in answer["answer"]
    assert answer["citations"]
    for c in answer["citations"]:
        assert f"[{c['n']}]" in answer["answer"]
        assert read_seed(c["doc_id"])[c["start"] : c["end"]] == c["quote"]
    assert answer["citations"][0]["doc_id"] == "002_823df25e19dc7a4e"


def test_ask_prints_the_answer_and_its_sources(data_dir: Path) -> None:
    code, out, _ = sanad("ask", "كم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار بحسب غازي حمد؟", "--data-dir",
                         str(data_dir))
    assert code == 0
    assert "900" in out and "004_62f51f2fac3a5964" in out


def test_plain_ask_prints_the_conversation_id_to_follow_up_with(data_dir: Path) -> None:
    """`sanad ask --help` says the conversation id is printed: without --json too, on stderr (stdout is the
    answer), whole on one line, and `-s <id>` continues that conversation."""
    result = runner.invoke(app, ["ask", "من ترأس اجتماع القاهرة الطارئ عن مصر؟", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.stderr
    found = re.search(r"^conversation (\S+) · follow up with `sanad ask -c …`", result.stderr, re.MULTILINE)
    assert found, result.stderr
    session = found[1]
    assert session not in result.stdout
    follow = runner.invoke(app, ["ask", "--json", "-s", session, "ومن مثل تركيا فيه؟", "--data-dir", str(data_dir)])
    assert follow.exit_code == 0, follow.stderr
    assert json.loads(follow.stdout)["session_id"] == session

def test_ask_doc_filter(data_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "من يرأس جهاز المخابرات العامة المصرية؟", "--json", "--doc",
                                 "000_ddb8d80929f4d864", "--data-dir", str(data_dir)])
    assert result.exit_code == 0
    assert {c["doc_id"] for c in json.loads(result.stdout)["citations"]} == {"000_ddb8d80929f4d864"}


def test_unanswerable_question_is_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["ask", "كيف أطبخ الكبسة بالدجاج؟", "--json", "--data-dir", str(data_dir)])
    answer = json.loads(result.stdout)
    assert (answer["answerable"], answer["citations"], answer["answer"]) == (False, [], REFUSAL_AR)


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_exits_2_with_a_message(data_dir: Path, question: str) -> None:
    code, out, err = sanad("ask", question, "--data-dir", str(data_dir))
    assert code == 2
    assert "question is empty" in err
    assert out == ""


def test_ask_on_an_empty_index_says_how_to_fill_it(tmp_path: Path) -> None:
    code, _, err = sanad("ask", "من يرأس وفد حماس؟", "--data-dir", str(tmp_path / "empty"))
    assert code == 0
    assert "sanad index" in err


def test_index_reports_bad_files_as_skipped_and_indexes_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text("اجتماع في الدوحة\nعقد الوسطاء اجتماعا جديدا في الدوحة.\n", encoding="utf-8")
    (folder / "image.txt").write_bytes(b"\x89PNG\x00\x00\x00")
    (folder / "blank.md").write_text("\n\n", encoding="utf-8")
    code, out, err = sanad("index", str(folder), "--data-dir", str(tmp_path / "data"))
    assert code == 0
    assert "1 documents (1 added" in out and "2 skipped" in out
    assert re.search(r"skipped \S*image\.txt: binary file", err), err
    assert re.search(r"skipped \S*blank\.md: empty", err), err


def _day_archive(folder: Path) -> Path:
    """A SaudiNewsNet-like day: one article and one record without text, in ``2015-07-23.json``."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": "ok", "title": "اجتماع في الدوحة", "text": "عقد الوسطاء اجتماعا جديدا في الدوحة."},
            {"id": "blank", "title": "خبر بلا نص", "text": " "}]
    archive = folder / "2015-07-23.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("2015-07-23.json", json.dumps(rows, ensure_ascii=False))
    return archive


def test_skip_lines_in_a_log_file_are_never_broken(tmp_path: Path) -> None:
    """Redirected to a file (no terminal, 80 columns) a skip line stays one line: its path whole, greppable."""
    archive = _day_archive(tmp_path / "newsroom-archive-exports" / "saudinewsnet-2015-july")
    result = runner.invoke(app, ["index", str(archive), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.stderr
    line = f"skipped {archive}/2015-07-23.json#2: empty"
    assert len(line) > 80
    assert line in result.stderr.splitlines(), result.stderr


def test_skipped_archive_members_through_a_server_name_the_archive_once(tmp_path: Path, settings: Settings,
                                                                        engine: Sanad) -> None:
    """`sanad index` beside a running server uploads the archive; a skipped member is named as without a
    server (``…/2015-07-23.zip/2015-07-23.json#2``), not ``2015-07-23.zip:2015-07-23.zip/…``."""
    from fastapi.testclient import TestClient

    from sanad.remote import SanadClient
    from service.app import create_app

    archive = _day_archive(tmp_path / "in")
    with TestClient(create_app(settings, engine)) as http, SanadClient("http://testserver") as client:
        client._http.close()
        client._http = http
        summary = client.index_files([archive])
    assert summary.documents == 1
    assert [(s.path, s.reason) for s in summary.skipped] == [(f"{archive}/2015-07-23.json#2", "empty")]

def test_index_with_nothing_indexable_fails(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"%PDF-1.4")
    code, out, err = sanad("index", str(bad), "--data-dir", str(tmp_path / "data"))
    assert code == 1
    assert "unsupported file type" in err and "0 documents" in out


def test_a_changed_vector_setting_is_refused_until_the_index_is_rebuilt(tmp_path: Path) -> None:
    folder = str(tmp_path / "data")
    assert runner.invoke(app, ["index", str(SEEDS), "--data-dir", folder]).exit_code == 0
    env = {"SANAD_RETRIEVAL__GRAM_WEIGHT": "2.0"}
    refused = runner.invoke(app, ["index", str(SEEDS), "--data-dir", folder], env=env)
    assert refused.exit_code == 2
    assert "SANAD_RETRIEVAL__GRAM_WEIGHT" in " ".join(refused.stderr.split())
    rebuilt = runner.invoke(app, ["index", "--rebuild", str(SEEDS), "--data-dir", folder], env=env)
    assert rebuilt.exit_code == 0 and "5 added" in rebuilt.stdout
    asked = runner.invoke(app, ["ask", "من يرأس وفد حماس في مفاوضات القاهرة؟", "--json", "--data-dir", folder], env=env)
    assert asked.exit_code == 0 and "خليل الحية" in json.loads(asked.stdout)["answer"]


def test_indexing_a_path_that_does_not_exist_says_so(tmp_path: Path) -> None:
    code, _, err = sanad("index", str(tmp_path / "missing" / "path"), "--data-dir", str(tmp_path / "data"))
    assert code == 2 and "missing/path: no such file or folder" in err


def test_documents_json_lists_what_was_indexed(data_dir: Path) -> None:
    result = runner.invoke(app, ["documents", "--json", "--data-dir", str(data_dir)])
    assert result.exit_code == 0
    docs = json.loads(result.stdout)
    assert sorted(d["doc_id"] for d in docs) == SEED_IDS and all(d["chunks"] > 0 for d in docs)


def test_long_titles_are_shortened_at_a_word_with_an_ellipsis() -> None:
    from service.sources import shorten

    title = "توافق على تكثيف جهود تنفيذ المرحلة الثانية من اتفاق غزة خلال اجتماع القاهرة"
    short = shorten(title, 40)
    assert short.endswith("…") and len(short) <= 40
    assert title.startswith(short[:-1]) and title[len(short) - 1] == " "  # cut between words
    assert shorten("قصير") == "قصير"


def test_ask_continues_the_last_conversation_with_c(data_dir: Path) -> None:
    first = runner.invoke(app, ["ask", "--json", "من ترأس اجتماع القاهرة الطارئ عن مصر؟", "--data-dir", str(data_dir)])
    assert first.exit_code == 0, first.stderr
    session = json.loads(first.stdout)["session_id"]
    follow = runner.invoke(app, ["ask", "--json", "-c", "ومن مثل تركيا فيه؟", "--data-dir", str(data_dir)])
    assert follow.exit_code == 0, follow.stderr
    answer = json.loads(follow.stdout)
    assert answer["session_id"] == session and "كالين" in answer["answer"]
    # --session picks a conversation by id; the server would see the same stored turns.
    again = runner.invoke(app, ["ask", "--json", "--session", session, "ومتى عقد؟", "--data-dir", str(data_dir)])
    assert again.exit_code == 0 and json.loads(again.stdout)["session_id"] == session

    from service.conversations import ConversationStore

    store = ConversationStore.open(data_dir, 200)
    try:
        asked = [t["content"] for t in (store.get(session) or {})["turns"] if t["role"] == "user"]
    finally:
        store.close()
    assert asked == ["من ترأس اجتماع القاهرة الطارئ عن مصر؟", "ومن مثل تركيا فيه؟", "ومتى عقد؟"]


def test_continuing_without_a_conversation_or_with_an_unknown_one_says_so(tmp_path: Path, data_dir: Path) -> None:
    code, _, err = sanad("ask", "-c", "ومتى عقد؟", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and "no earlier conversation" in err
    code, _, err = sanad("ask", "--session", "nope", "ومتى عقد؟", "--data-dir", str(data_dir))
    assert code == 2 and "No conversation with id 'nope'" in err


def test_ask_within_a_date_range(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    archive = tmp_path / "fires.jsonl"
    rows = [{"id": "fire-july", "date": "2015-07-22", "title": "حريق في جدة",
             "text": "اندلع حريق في مستودع للأخشاب في جدة وأخمدته فرق الدفاع المدني خلال ثلاث ساعات."},
            {"id": "fire-august", "date": "2015-08-05", "title": "حريق في جدة",
             "text": "اندلع حريق في مستودع للأقمشة في جدة وأخمدته فرق الدفاع المدني خلال ساعة واحدة."}]
    archive.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert sanad("index", str(archive), "--data-dir", str(folder))[0] == 0
    question = "كم استغرق إخماد حريق المستودع في جدة؟"
    for args, want in ((["--from", "2015-08-01"], {"fire-august"}), (["--to", "2015-07-31"], {"fire-july"})):
        result = runner.invoke(app, ["ask", "--json", question, *args, "--data-dir", str(folder)])
        assert result.exit_code == 0, result.stderr
        assert {c["doc_id"] for c in json.loads(result.stdout)["citations"]} == want
    code, _, err = sanad("ask", question, "--from", "2015-08-10", "--to", "2015-08-01", "--data-dir", str(folder))
    assert code == 2 and "is after" in err
    code, _, err = sanad("ask", question, "--from", "last week", "--data-dir", str(folder))
    assert code == 2 and "YYYY-MM-DD" in err


def test_a_dense_pass_in_the_background_logs_progress_lines(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Under nohup or in a log file rich draws no bar: a line with the count, the rate and the ETA instead."""
    from sanad import cli

    monkeypatch.setattr(cli, "_LOG_EVERY", 0.0)
    advance = cli._log_progress("dense vectors", 67_085)
    advance(16)
    advance(16)
    logged = capsys.readouterr().err.splitlines()
    assert len(logged) == 2 and logged[-1].startswith("dense vectors: 32 / 67,085 (0.0%)")
    assert "/s, ETA" in logged[-1]
    line = cli.progress_line("dense vectors", 1_200, 67_085, 290.0)
    assert line == "dense vectors: 1,200 / 67,085 (1.8%), 4.1/s, ETA 4h 25m"


def test_ask_keeps_its_conversation_in_the_shared_database_when_one_is_set(
        data_dir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.conversations import ConversationStore

    monkeypatch.setenv("SANAD_DATABASE__URL", postgres_url)
    first = runner.invoke(app, ["ask", "--json", "من ترأس اجتماع القاهرة الطارئ عن مصر؟", "--data-dir", str(data_dir)])
    assert first.exit_code == 0, first.stderr
    session = json.loads(first.stdout)["session_id"]
    follow = runner.invoke(app, ["ask", "--json", "-c", "ومن مثل تركيا فيه؟", "--data-dir", str(data_dir)])
    assert follow.exit_code == 0 and json.loads(follow.stdout)["session_id"] == session
    store = ConversationStore.open(data_dir / "elsewhere", 200, postgres_url)  # any process on the database
    try:
        assert [t.role for t in store.history(session, 10)] == ["user", "assistant", "user", "assistant"]
    finally:
        store.close()

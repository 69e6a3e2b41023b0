"""The evaluation harness: gold parsing, metrics on hand-made answers, and ``sanad eval`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evals.gold import GoldError, GoldItem, load_gold
from evals.metrics import answer_language, fact_found, score_item, summarize, summarize_by_language
from index.readers import read_path
from rag.models import Answer, Article, Citation
from sanad.cli import app

runner = CliRunner()

ITEM_KEYS = {"id", "retrieved", "answer", "citations", "facts_found", "facts_missed", "refused", "latency_ms"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def cite(n: int, doc_id: str, quote: str) -> Citation:
    return Citation(n=n, doc_id=doc_id, title="", chunk_id=f"{doc_id}-c", text=quote, quote=quote, start=0,
                    end=len(quote))


def answer(text: str, *citations: Citation, answerable: bool = True, lang: str = "ar") -> Answer:
    return Answer(answer=text, language=lang, answerable=answerable, citations=list(citations))  # type: ignore[arg-type]


def gold(id: str = "q", lang: str = "ar", facts: list[list[str]] | None = None, sources: list[str] | None = None,
         answerable: bool = True) -> GoldItem:
    return GoldItem(id=id, lang=lang, question="سؤال؟", facts=facts or [], sources=sources or [],  # type: ignore[arg-type]
                    answerable=answerable)


# -- gold file ---------------------------------------------------------------------------------------


def test_gold_errors_name_every_bad_line(tmp_path: Path) -> None:
    f = tmp_path / "gold.jsonl"
    f.write_text(
        '{"id": "ok", "lang": "ar", "question": "من؟", "facts": [["أ"]], "sources": ["d1"]}\n'
        '{"id": "broken", "lang": "ar", \n'
        '{"id": "extra", "lang": "ar", "question": "من؟", "sources": ["d1"], "difficulty": "hard"}\n'
        '{"id": "noq", "lang": "ar", "sources": ["d1"]}\n'
        '\n'
        '{"id": "nosrc", "lang": "ar", "question": "من؟", "facts": [["أ"]]}\n'
        '{"id": "ok", "lang": "ar", "question": "ماذا؟", "sources": ["d2"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(GoldError) as exc:
        load_gold(f)
    problems = exc.value.problems
    by_line = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_line) == {"line 2", "line 3", "line 4", "line 6", "line 7"}
    assert "malformed JSON" in by_line["line 2"]
    assert "difficulty" in by_line["line 3"] and "unknown field" in by_line["line 3"]
    assert "question" in by_line["line 4"]
    assert "source" in by_line["line 6"]
    assert "duplicate" in by_line["line 7"]


def test_unanswerable_item_with_sources_is_rejected(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "g.jsonl", [{"id": "u", "lang": "ar", "question": "من؟", "answerable": False,
                                            "sources": ["d1"]}])
    with pytest.raises(GoldError, match="line 1"):
        load_gold(f)


def test_bad_gold_file_stops_eval_before_anything_runs(tmp_path: Path) -> None:
    f = tmp_path / "gold.jsonl"
    f.write_text('{"id": "a", "lang": "ar", "question": "من؟", "sources": ["d"]}\n{"id": "b", "lang": "xx"}\n',
                 encoding="utf-8")
    report = tmp_path / "report"
    result = runner.invoke(app, ["eval", "--gold", str(f), "--corpus", str(tmp_path / "missing"), "--report",
                                 str(report), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "line 2" in result.stderr
    assert not report.exists()


# -- metrics on hand-made answers -------------------------------------------------------------------------


def test_hit_at_k_and_mrr() -> None:
    items = [gold(f"q{i}", facts=[["x"]], sources=["good"]) for i in range(3)]
    retrieved = [["good", "a", "b"], ["a", "b", "good"], ["a", "b", "c"]]
    results = [score_item(it, answer("x [1]", cite(1, "good", "x")), r, 10.0) for it, r in zip(items, retrieved,
                                                                                                 strict=True)]
    assert [r.hit_rank for r in results] == [1, 3, None]
    s = summarize(results)
    assert s["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["hit@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["mrr@10"] == pytest.approx((1 + 1 / 3) / 3, abs=1e-4)


def test_a_missed_fact_is_reported() -> None:
    item = gold(facts=[["900"], ["440"]], sources=["d"])
    r = score_item(item, answer("انتهك الجيش الهدنة 900 مرة [1]", cite(1, "d", "انتهك الجيش الهدنة 900 مرة")),
                   ["d"], 5.0)
    assert r.facts_found == [["900"]] and r.facts_missed == [["440"]]
    s = summarize([r])
    assert s["fact_recall"] == 0.5 and s["all_facts"] == 0.0


@pytest.mark.parametrize(
    ("fact", "text"),
    [
        ("إبراهيم كالين", "شارك ابراهيم كالين في الاجتماع"),
        ("900", "أكثر من ٩٠٠ مرة"),
        ("مُحَمَّد", "قال محمد"),
        ("الهدنة", "تثبيت الهدنه"),
        ("مستشفى", "المستشفي الميداني"),
        ("Hakan Fidan", "hakan  fidan said"),
    ],
)
def test_fact_matching_ignores_spelling_variants(fact: str, text: str) -> None:
    assert fact_found([fact], text)


def test_fact_matching_still_tells_facts_apart() -> None:
    assert not fact_found(["قطر"], "مصر وتركيا")
    assert not fact_found(["900"], "أكثر من 90 مرة")
    assert fact_found(["نيويورك", "900"], "أكثر من 900 مرة")  # any alternative


def test_wrong_citation_lowers_precision_and_support_counts_quotes_with_the_fact() -> None:
    item = gold(facts=[["خليل الحية"]], sources=["hamas"])
    good = cite(1, "hamas", "الوفد برئاسة الدكتور خليل الحية وصل القاهرة")
    wrong = cite(2, "other", "استضافت القاهرة اجتماعا أمنيا")
    r = score_item(item, answer("خليل الحية [1] والقاهرة [2]", good, wrong), ["hamas", "other"], 5.0)
    assert (r.cited_from_sources, r.cited_supporting) == (1, 1)
    s = summarize([r])
    assert s["citation_precision"] == 0.5
    assert s["citation_support"] == 0.5

    only_good = summarize([score_item(item, answer("خليل الحية [1]", good), ["hamas"], 5.0)])
    assert only_good["citation_precision"] == 1.0 and only_good["citation_support"] == 1.0


def test_refusal_rates() -> None:
    refusal = answer("لا تتضمن المقالات المتاحة إجابة عن هذا السؤال.", answerable=False)
    ok = answer("x [1]", cite(1, "d", "x"))
    results = [
        score_item(gold("u1", answerable=False), refusal, [], 1.0),
        score_item(gold("u2", answerable=False), ok, ["d"], 1.0),  # answered an unanswerable question
        score_item(gold("a1", facts=[["x"]], sources=["d"]), refusal, ["d"], 1.0),  # refused an answerable one
        score_item(gold("a2", facts=[["x"]], sources=["d"]), ok, ["d"], 1.0),
        score_item(gold("a3", facts=[["x"]], sources=["d"]), ok, ["d"], 1.0),
        score_item(gold("a4", facts=[["x"]], sources=["d"]), ok, ["d"], 1.0),
    ]
    s = summarize(results)
    assert s["refusal_rate"] == 0.5
    assert s["false_refusal_rate"] == 0.25


def test_hedged_answers_are_counted_apart_from_confident_ones() -> None:
    sure = answer("x [1]", cite(1, "d", "x"))
    hedged = Answer(answer="قد لا تجيب المقالات عن هذا السؤال مباشرة؛ أقرب ما ورد فيها: y [1]", language="ar",
                    answerable=True, citations=[cite(1, "d", "y")], confident=False)
    results = [
        score_item(gold("u1", answerable=False), hedged, ["d"], 1.0),  # unanswerable, offered as the closest
        score_item(gold("u2", answerable=False), sure, ["d"], 1.0),  # unanswerable, answered confidently
        score_item(gold("a1", facts=[["x"]], sources=["d"]), sure, ["d"], 1.0),
        score_item(gold("a2", facts=[["x"]], sources=["d"]), hedged, ["d"], 1.0),  # answerable, hedged
    ]
    s = summarize(results)
    assert s["hedged"] == 0.5  # of the answerable items
    assert s["unanswerable_confident"] == 0.5
    assert s["confident_right"] == 0.5  # the confident answers: one right (a1), one to an unanswerable (u2)
    assert s["refusal_rate"] == 0.0  # a hedge is not a refusal


def test_language_match_treats_quoted_arabic_as_the_articles_words() -> None:
    english = "The articles (in Arabic) say: «وقد صرح ممثل حركة حماس غازي حمد بأن الجيش انتهك الهدنة 900 مرة» [1]"
    assert answer_language(english) == "en"
    assert answer_language("Lavrov said the plan looks doubtful [1].") == "en"
    assert answer_language("قال لافروف إن الخطة مشكوك فيها [1].") == "ar"
    assert answer_language("«قال لافروف إن الخطة مشكوك فيها»") == "ar"  # nothing but a quote: its language
    en_item = gold("e", lang="en", facts=[["900"]], sources=["d"])
    assert score_item(en_item, answer(english, cite(1, "d", "x"), lang="en"), ["d"], 1.0).language_ok
    assert not score_item(en_item, answer("انتهك الجيش الهدنة 900 مرة [1]", cite(1, "d", "x")), ["d"], 1.0).language_ok


def test_summary_per_language() -> None:
    ok = answer("x [1]", cite(1, "d", "x"))
    results = [score_item(gold("a", lang="ar", facts=[["x"]], sources=["d"]), ok, ["d"], 1.0),
               score_item(gold("e", lang="en", facts=[["y"]], sources=["d"]), ok, ["d"], 3.0)]
    by = summarize_by_language(results)
    assert set(by) == {"overall", "ar", "en"}
    assert (by["overall"]["items"], by["ar"]["items"], by["en"]["items"]) == (2, 1, 1)
    assert (by["ar"]["fact_recall"], by["en"]["fact_recall"], by["overall"]["fact_recall"]) == (1.0, 0.0, 0.5)


# -- sanad eval end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "cairo.txt").write_text(
        "اجتماع أمني في القاهرة\nاستضافت القاهرة يوم الثلاثاء اجتماعا أمنيا ضم رؤساء أجهزة المخابرات في مصر وقطر "
        "وتركيا لبحث تثبيت الهدنة في غزة.\nوترأس اللواء حسن رشاد الاجتماع عن الجانب المصري.\n", encoding="utf-8")
    (corpus / "olives.txt").write_text(
        "موسم قطف الزيتون\nبدأ المزارعون في الضفة الغربية موسم قطف الزيتون في شهر أكتوبر، ويتوقع أن يبلغ إنتاج "
        "الزيت 20 ألف طن هذا العام.\n", encoding="utf-8")
    (corpus / "metro.txt").write_text(
        "افتتاح خط مترو جديد\nافتتحت السلطات خط المترو الثالث في القاهرة بطول 41 كيلومترا، ويضم 34 محطة تخدم نحو "
        "مليوني راكب يوميا.\n", encoding="utf-8")
    gold_file = write_jsonl(root / "gold.jsonl", [
        {"id": "g1", "lang": "ar", "question": "من ترأس الاجتماع الأمني عن الجانب المصري؟", "facts": [["حسن رشاد"]],
         "sources": ["cairo"]},
        {"id": "g2", "lang": "ar", "question": "كم طنا من زيت الزيتون يتوقع إنتاجه هذا العام؟",
         "facts": [["20 ألف طن"]], "sources": ["olives"]},
        {"id": "g3", "lang": "en", "question": "How many stations does the third metro line have, 34?",
         "facts": [["34"]], "sources": ["metro"]},
        {"id": "g4", "lang": "ar", "question": "من فاز بكأس العالم لكرة القدم؟", "answerable": False},
    ])
    return {"root": root, "corpus": corpus, "gold": gold_file}


def run_eval(small: dict[str, Path], report: Path, *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["eval", "--gold", str(small["gold"]), "--corpus", str(small["corpus"]), "--report",
                                 str(report), "--data-dir", str(small["root"] / "data"), *extra])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.stdout.split()), " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def first_report(small: dict[str, Path]) -> dict[str, Any]:
    code, out, err = run_eval(small, small["root"] / "first")
    assert code == 0, err
    assert "report:" in out
    return json.loads((small["root"] / "first" / "report.json").read_text(encoding="utf-8"))


def test_eval_writes_a_report_with_summary_and_items(first_report: dict[str, Any], small: dict[str, Path]) -> None:
    summary = first_report["summary"]
    assert set(summary) == {"overall", "ar", "en"}
    assert (summary["overall"]["items"], summary["ar"]["items"], summary["en"]["items"]) == (4, 3, 1)
    items = {i["id"]: i for i in first_report["items"]}
    assert set(items) == {"g1", "g2", "g3", "g4"}
    assert all(set(i) >= ITEM_KEYS for i in items.values())
    assert all(isinstance(i["latency_ms"], float) and i["latency_ms"] > 0 for i in items.values())
    # What the engine did, as recorded: the right article first, the fact found, the off-topic item refused.
    assert items["g1"]["retrieved"][0] == "cairo" and items["g1"]["facts_found"] == [["حسن رشاد"]]
    assert "حسن رشاد" in items["g1"]["answer"] and items["g1"]["citations"][0]["doc_id"] == "cairo"
    assert items["g2"]["retrieved"][0] == "olives" and items["g2"]["facts_missed"] == []
    assert items["g4"]["refused"] is True and items["g4"]["citations"] == []
    assert summary["overall"]["refusal_rate"] == 1.0
    assert (small["root"] / "first" / "report.md").exists()


def test_thresholds_that_cannot_be_met_fail_the_run_naming_the_metric(small: dict[str, Path]) -> None:
    impossible = small["root"] / "impossible.toml"
    impossible.write_text('[ar.min]\nfact_recall = 1.01\n[overall.max]\n"latency_p95_ms" = 100000\n', encoding="utf-8")
    code, _, err = run_eval(small, small["root"] / "strict", "--thresholds", str(impossible))
    assert code == 1
    assert "threshold missed" in err and "ar fact_recall" in err
    assert "latency" not in err  # the bound that was met is not reported
    report = json.loads((small["root"] / "strict" / "report.json").read_text(encoding="utf-8"))
    assert len(report["thresholds_missed"]) == 1


def test_thresholds_that_are_met_pass(small: dict[str, Path]) -> None:
    easy = small["root"] / "easy.toml"
    easy.write_text('[overall.min]\n"hit@5" = 0.5\n[ar.max]\nfalse_refusal_rate = 0.5\n', encoding="utf-8")
    code, _, err = run_eval(small, small["root"] / "easy", "--thresholds", str(easy))
    assert code == 0, err


def test_baseline_comparison_lists_what_changed(small: dict[str, Path], first_report: dict[str, Any]) -> None:
    baseline = json.loads(json.dumps(first_report))
    items = {i["id"]: i for i in baseline["items"]}
    items["g1"]["facts_found"] = []  # it was worse before: now better
    items["g4"]["refused"] = False  # it answered an unanswerable question before: now better
    items["g2"]["facts_found"] = [["20 ألف طن"], ["أكتوبر"]]  # it found more before: now worse
    baseline["summary"]["overall"]["fact_recall"] = 0.1
    path = small["root"] / "baseline.json"
    path.write_text(json.dumps(baseline, ensure_ascii=False), encoding="utf-8")

    code, out, _ = run_eval(small, small["root"] / "compared", "--baseline", str(path))
    assert code == 0
    assert "against baseline: 2 items better, 1 worse" in out
    assert "worse g2: facts 2->1" in out
    comparison = json.loads((small["root"] / "compared" / "report.json").read_text(encoding="utf-8"))["comparison"]
    assert {c["id"]: c["changes"] for c in comparison["better"]} == {"g1": ["facts 0->1"], "g4": ["refused"]}
    assert comparison["metric_changes"]["overall.fact_recall"]["before"] == 0.1


def test_squad_convert_writes_corpus_and_gold_with_english_questions(tmp_path: Path) -> None:
    context = "افتتحت السلطات خط المترو الثالث في القاهرة عام 2012، ويضم 34 محطة."
    ar = {"data": [{"title": "Cairo Metro", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "كم محطة يضم الخط الثالث؟", "answers": [{"text": "34", "answer_start": 50}]},
        {"id": "q2", "question": "متى افتتح الخط الثالث؟",
         "answers": [{"text": "2012", "answer_start": 40}, {"text": "عام 2012", "answer_start": 36}]},
    ]}]}]}
    en = {"data": [{"title": "Cairo Metro", "paragraphs": [{"context": "The third line ...", "qas": [
        {"id": "q1", "question": "How many stations does the third line have?", "answers": []},
        {"id": "q2", "question": "When did the third line open?", "answers": []},
    ]}]}]}
    squad, questions = tmp_path / "xquad.ar.json", tmp_path / "xquad.en.json"
    squad.write_text(json.dumps(ar, ensure_ascii=False), encoding="utf-8")
    questions.write_text(json.dumps(en), encoding="utf-8")
    out = tmp_path / "out"

    result = runner.invoke(app, ["squad-convert", str(squad), "--out", str(out), "--questions", str(questions)])
    assert result.exit_code == 0, result.stderr
    corpus = [a for a in read_path(out / "corpus.jsonl", 10**6)]
    assert len(corpus) == 1 and isinstance(corpus[0], Article)
    assert corpus[0].text == context and corpus[0].title == "Cairo Metro"
    items = load_gold(out / "gold.jsonl")
    assert [(i.id, i.lang, i.question) for i in items] == [
        ("q1", "en", "How many stations does the third line have?"), ("q2", "en", "When did the third line open?")]
    assert items[1].facts == [["2012", "عام 2012"]]
    assert all(i.sources == [corpus[0].id] for i in items)

    code = runner.invoke(app, ["eval", "--gold", str(out / "gold.jsonl"), "--corpus", str(out / "corpus.jsonl"),
                               "--report", str(tmp_path / "rep"), "--data-dir", str(tmp_path / "data")]).exit_code
    assert code == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text(encoding="utf-8"))
    assert set(report["summary"]) == {"overall", "en"}
    assert [i["id"] for i in report["items"]] == ["q1", "q2"] and report["summary"]["en"]["items"] == 2


def test_squad_convert_drop_answer_takes_out_the_answer_sentence_and_keeps_the_paragraph(tmp_path: Path) -> None:
    first, second = "افتتحت السلطات خط المترو الثالث في القاهرة عام 2012.", "ويضم الخط الثالث 34 محطة."
    context = f"{first} {second}"
    ar = {"data": [{"title": "Cairo Metro", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "كم محطة يضم الخط الثالث؟",
         "answers": [{"text": "34", "answer_start": context.index("34")}]},
        {"id": "q2", "question": "متى افتتح الخط الثالث؟",
         "answers": [{"text": "2012", "answer_start": context.index("2012")}]},
    ]}]}]}
    squad = tmp_path / "xquad.ar.json"
    squad.write_text(json.dumps(ar, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"

    result = runner.invoke(app, ["squad-convert", str(squad), "--out", str(out), "--drop-answer", "0.9"])
    assert result.exit_code == 0, result.stderr
    corpus = [a for a in read_path(out / "corpus.jsonl", 10**6) if isinstance(a, Article)]
    assert len(corpus) == 1 and corpus[0].text in (first, second)  # one sentence taken out, the other kept
    items = {i.id: i for i in load_gold(out / "gold.jsonl")}
    answers = {"q1": "34", "q2": "2012"}
    gone = [q for q, i in items.items() if not i.answerable]
    assert len(gone) == 1 and answers[gone[0]] not in corpus[0].text
    assert items[gone[0]].facts == [] and items[gone[0]].sources == []
    kept = next(i for q, i in items.items() if q not in gone)
    assert kept.answerable and kept.sources == [corpus[0].id] and answers[kept.id] in corpus[0].text


def test_model_judged_faithfulness_is_added_and_labelled(tmp_path: Path) -> None:
    from evals.runner import judge_faithfulness
    from rag.settings import LLMSettings, Settings
    from tests.fakes.openai_server import run_fake_openai

    item = gold(facts=[["900"]], sources=["d1"])
    cited = score_item(item, answer("انتهك 900 مرة [1]", cite(1, "d1", "انتهك وقف إطلاق النار 900 مرة")), ["d1"], 5.0)
    refused = score_item(gold(id="r", facts=[], sources=[], answerable=False),
                         answer("لا تتضمن المقالات", answerable=False), [], 5.0)
    with run_fake_openai() as (fake, base_url):
        fake.reply = lambda messages: "0.75"
        settings = Settings.in_memory(tmp_path, llm=LLMSettings(base_url=base_url, api_key="x", model="fake-model"))
        judge_faithfulness(settings, [cited, refused])
        prompt = fake.requests[-1]["body"]["messages"][-1]["content"]
    assert cited.faithfulness == 0.75 and refused.faithfulness is None  # refusals are not judged
    assert "انتهك وقف إطلاق النار 900 مرة" in prompt  # judged against the quotes it cites
    assert summarize([cited, refused])["faithfulness_model_judged"] == 0.75


def test_eval_against_a_running_service_matches_in_process(tmp_path: Path) -> None:
    """``sanad eval --url`` asks a real server over HTTP and scores it exactly like the in-process run."""


    from evals.runner import DEFAULT_GOLD
    from index.ingest import Indexer
    from rag.engine import Sanad
    from rag.settings import LLMSettings, ServiceSettings, Settings
    from service.app import create_app
    from tests.servers import serve

    seeds = Path(__file__).resolve().parents[1] / "seeds"
    gold_lines = DEFAULT_GOLD.read_text(encoding="utf-8").splitlines()
    picked = [line for line in gold_lines if '"turns": []' not in line][:2] + gold_lines[:4]  # follow-ups too
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text("\n".join(picked) + "\n", encoding="utf-8")

    settings = Settings.in_memory(tmp_path / "srv", llm=LLMSettings(), api_keys="",
                                  service=ServiceSettings(rate_limit_per_minute=0))
    engine = Sanad.open(settings)
    Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([seeds])
    try:
        with serve(create_app(settings, engine=engine), lifespan="on") as url:
            remote = CliRunner().invoke(app, ["eval", "--url", url, "--gold", str(gold_file),
                                              "--report", str(tmp_path / "remote"), "--data-dir", str(tmp_path)])
    finally:
        engine.close()
    local = CliRunner().invoke(app, ["eval", "--gold", str(gold_file), "--corpus", str(seeds),
                                     "--report", str(tmp_path / "local"), "--data-dir", str(tmp_path)])
    assert remote.exit_code == 0, remote.output
    assert local.exit_code == 0, local.output
    got = json.loads((tmp_path / "remote" / "report.json").read_text(encoding="utf-8"))
    want = json.loads((tmp_path / "local" / "report.json").read_text(encoding="utf-8"))
    assert got["meta"]["target"] == url
    assert len(got["items"]) == len(picked)
    for g, w in zip(got["items"], want["items"], strict=True):
        keys = ("id", "answer", "retrieved", "refused")
        assert [g[k] for k in keys] == [w[k] for k in keys]

"""Reading articles from files: metadata where the user put it, one-line reasons for what is skipped."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from index.readers import Skipped, iter_files, read_path
from rag.models import Article
from rag.settings import IndexSettings
from tests.conftest import SEEDS

MAX = IndexSettings().max_file_bytes

HTML = """<!doctype html>
<html lang="ar"><head><meta charset="utf-8"><title>الموقع | اجتماع القاهرة</title></head>
<body>
<nav><a href="/">الرئيسية</a> | <a href="/politics">سياسة</a> | <a href="/sport">رياضة NAVLINK</a></nav>
<article>
<h1>اجتماع أمني في القاهرة لبحث تثبيت التهدئة</h1>
<p>استضافت القاهرة اليوم اجتماعا أمنيا رفيع المستوى جمع رؤساء أجهزة المخابرات في مصر وقطر وتركيا لبحث
سبل تثبيت وقف إطلاق النار في قطاع غزة وضمان الانتقال إلى المرحلة الثانية من الاتفاق.</p>
<p>وقال مسؤول مصري إن المشاركين اتفقوا على تشكيل فريق اتصال دائم يعمل على مدار الساعة بين العواصم
المعنية لمتابعة تنفيذ بنود الاتفاق ومنع أي تصعيد جديد.</p>
</article>
<footer>جميع الحقوق محفوظة FOOTERTEXT 2026 — سياسة الخصوصية</footer>
</body></html>
"""


def read_one(path: Path, max_bytes: int = MAX) -> Article | Skipped:
    items = list(read_path(path, max_bytes))
    assert len(items) == 1, items
    return items[0]


def skipped_reason(path: Path, max_bytes: int = MAX) -> str:
    item = read_one(path, max_bytes)
    assert isinstance(item, Skipped), item
    assert item.path == str(path)
    assert item.reason and "\n" not in item.reason
    return item.reason


def test_txt_title_is_the_first_non_empty_line(tmp_path: Path) -> None:
    f = tmp_path / "cairo-talks.txt"
    f.write_text("\n\n  وفد حماس يصل القاهرة  \nوصل الوفد مساء الأحد.\n", encoding="utf-8")
    art = read_one(f)
    assert isinstance(art, Article)
    assert art.id == "cairo-talks"
    assert art.title == "وفد حماس يصل القاهرة"
    assert art.date is None
    assert art.text == f.read_text(encoding="utf-8")  # offsets refer to the file as written


def test_leading_date_line_is_the_date_not_the_title() -> None:
    art = read_one(SEEDS / "004_62f51f2fac3a5964.txt")
    assert isinstance(art, Article)
    assert art.date == date(2026, 1, 1)
    assert art.title == "بمشاركة 4 دول ..اجتماع دولي عبر الإنترنت للتحضير للمرحلة الثانية في غزة"


def test_seed_without_date_line_has_no_date() -> None:
    art = read_one(SEEDS / "002_823df25e19dc7a4e.txt")
    assert isinstance(art, Article)
    assert art.date is None
    assert art.title.startswith("مصر تستضيف مفاوضات حماس وإسرائيل")


def test_markdown_front_matter_gives_title_date_source_url(tmp_path: Path) -> None:
    f = tmp_path / "note.md"
    f.write_text('---\ntitle: "هدنة غزة"\ndate: 2025-11-25\nsource: وكالة\nurl: https://example.org/a\n---\n'
                 "# عنوان آخر\n\nنص المقال.\n", encoding="utf-8")
    art = read_one(f)
    assert isinstance(art, Article)
    assert (art.title, art.date, art.source, art.url) == ("هدنة غزة", date(2025, 11, 25), "وكالة", "https://example.org/a")


def test_markdown_without_title_in_front_matter_takes_the_heading(tmp_path: Path) -> None:
    f = tmp_path / "note.md"
    f.write_text("---\ndate: 2025-11-25\nsource: وكالة\n---\n\n# اجتماع القاهرة\n\nنص المقال.\n", encoding="utf-8")
    art = read_one(f)
    assert isinstance(art, Article)
    assert art.title == "اجتماع القاهرة"
    assert art.date == date(2025, 11, 25)


def test_html_main_text_without_navigation_or_footer(tmp_path: Path) -> None:
    f = tmp_path / "page.html"
    f.write_text(HTML, encoding="utf-8")
    art = read_one(f)
    assert isinstance(art, Article)
    assert art.id == "page"
    assert "اجتماع أمني في القاهرة" in art.title
    assert "رؤساء أجهزة المخابرات في مصر وقطر وتركيا" in art.text
    assert "فريق اتصال دائم" in art.text
    assert "NAVLINK" not in art.text
    assert "FOOTERTEXT" not in art.text


def test_html_without_article_text_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "empty.html"
    f.write_text("<html><head><title>t</title></head><body><script>var x = 1;</script></body></html>", encoding="utf-8")
    assert "no article text" in skipped_reason(f)


def test_jsonl_one_article_per_line_with_all_fields(tmp_path: Path) -> None:
    f = tmp_path / "batch.jsonl"
    rows = [
        {"id": "a1", "title": "أ", "text": "نص أول.", "date": "2026-01-03", "source": "سما", "url": "https://x/1"},
        {"id": "a2", "text": "نص ثان."},
    ]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    items = list(read_path(f, MAX))
    assert all(isinstance(i, Article) for i in items)
    a1, a2 = items
    assert isinstance(a1, Article) and isinstance(a2, Article)
    assert (a1.id, a1.title, a1.text, a1.date, a1.source, a1.url) == (
        "a1", "أ", "نص أول.", date(2026, 1, 3), "سما", "https://x/1")
    assert (a2.id, a2.title, a2.date) == ("a2", "", None)


def test_jsonl_bad_lines_are_skipped_with_file_and_line_the_rest_is_read(tmp_path: Path) -> None:
    f = tmp_path / "batch.jsonl"
    f.write_text(
        '{"id": "good1", "text": "نص."}\n'
        '{"id": "broken", "text": \n'
        '{"id": "extra", "text": "نص.", "author": "someone"}\n'
        '{"title": "no id", "text": "نص."}\n'
        '["not", "an", "object"]\n'
        '{"id": "good2", "text": "نص آخر."}\n',
        encoding="utf-8",
    )
    items = list(read_path(f, MAX))
    assert [i.id for i in items if isinstance(i, Article)] == ["good1", "good2"]
    skipped = {i.path: i.reason for i in items if isinstance(i, Skipped)}
    assert set(skipped) == {f"{f}:2", f"{f}:3", f"{f}:4", f"{f}:5"}
    assert "author" in skipped[f"{f}:3"] and "unknown" in skipped[f"{f}:3"]
    assert "id" in skipped[f"{f}:4"]
    assert all("\n" not in r for r in skipped.values())


def test_empty_file_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "blank.txt"
    f.write_text(" \n\n\t\n", encoding="utf-8")
    assert skipped_reason(f) == "empty"


def test_binary_file_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "image.txt"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    assert "binary" in skipped_reason(f)


def test_undecodable_file_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "broken.txt"
    f.write_bytes(b"\xff\xfe" + "نص".encode("utf-16-le") + b"\xd8")  # UTF-16 cut in the middle of a character
    assert "undecodable" in skipped_reason(f)


def test_random_bytes_are_not_read_as_windows_1256(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    noise = bytes(rng.randrange(1, 256) for _ in range(4000))
    f = tmp_path / "noise.txt"
    f.write_bytes(noise)
    assert "undecodable" in skipped_reason(f)


def test_utf16_file_with_bom_is_read(tmp_path: Path) -> None:
    f = tmp_path / "notepad.txt"
    f.write_bytes("عنوان المقال\nنص المقال هنا.\n".encode("utf-16"))
    art = read_one(f)
    assert isinstance(art, Article)
    assert art.title == "عنوان المقال"
    assert "نص المقال هنا." in art.text


def test_windows_1256_arabic_file_is_read(tmp_path: Path) -> None:
    f = tmp_path / "legacy.txt"
    f.write_bytes("عنوان قديم\nنص بترميز ويندوز.\n".encode("cp1256"))
    art = read_one(f)
    assert isinstance(art, Article)
    assert art.title == "عنوان قديم"


def test_oversized_file_is_skipped(tmp_path: Path) -> None:
    limit = IndexSettings(max_file_bytes=100).max_file_bytes
    f = tmp_path / "long.txt"
    f.write_text("عنوان\n" + "كلمة " * 100, encoding="utf-8")
    reason = skipped_reason(f, limit)
    assert "too large" in reason and "100" in reason


@pytest.mark.parametrize("name", ["report.pdf", "data.csv", "README"])
def test_unsupported_extension_is_skipped(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_text("عنوان\nنص", encoding="utf-8")
    assert "unsupported" in skipped_reason(f)


def test_folders_are_walked_in_order_hidden_files_left_out(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for rel in ("b/2.txt", "a.txt", ".hidden.txt", ".git/x.txt"):
        (tmp_path / rel).write_text("عنوان\nنص", encoding="utf-8")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_files([tmp_path])] == ["a.txt", "b/2.txt"]


def test_jsonl_is_streamed_past_the_file_size_limit_and_bad_lines_are_named(tmp_path: Path) -> None:
    f = tmp_path / "many.jsonl"
    lines = [json.dumps({"id": f"a{i}", "title": "t", "text": "نص الخبر " * 20}, ensure_ascii=False) for i in range(50)]
    f.write_bytes("\n".join(lines[:10]).encode() + b"\n\xff\xfe broken\n" + "\n".join(lines[10:]).encode())
    items = list(read_path(f, max_bytes=1000))  # the file is far bigger than 1000 bytes
    articles = [i for i in items if not isinstance(i, Skipped)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(articles) == 50
    assert [s.path for s in skipped] == [f"{f}:11"] and "undecodable" in skipped[0].reason

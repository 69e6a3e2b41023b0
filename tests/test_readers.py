"""Reading articles from files: metadata where the user put it, one-line reasons for what is skipped."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

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
        '{"id": "extra", "text": "نص.", "author": "someone", "section": "sport", "tags": ["a"]}\n'
        '{"title": "no id", "text": "نص."}\n'
        '["not", "an", "object"]\n'
        '{"id": "no-text", "title": "عنوان"}\n'
        '{"id": "good2", "text": "نص آخر."}\n',
        encoding="utf-8",
    )
    items = list(read_path(f, MAX))
    articles = {i.id: i for i in items if isinstance(i, Article)}
    # Unknown fields are ignored (archives carry extra ones); a line without an id is named by its place.
    assert list(articles) == ["good1", "extra", "batch-000004", "good2"]
    assert articles["extra"].author == "someone"
    skipped = {i.path: i.reason for i in items if isinstance(i, Skipped)}
    assert set(skipped) == {f"{f}:2", f"{f}:5", f"{f}:6"}
    assert skipped[f"{f}:5"] == "not a JSON object"
    assert skipped[f"{f}:6"].startswith("no text field (text, content, body, article")
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


@pytest.mark.parametrize("name", ["report.pdf", "sheet.xlsx", "README"])
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


# -- what newsrooms have: JSON arrays, archives, CSV, feeds ----------------------------------------------------

SAUDINEWSNET_DAY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "saudinewsnet" / "2015-07-22.zip"

# Shaped like a SaudiNewsNet day (made up here: the real data is not copied into the repository).
DAY = [
    {"source": "aawsat", "url": "http://aawsat.com/home/article/1/الفقر", "date_extracted": "2015-07-22 00:05:53",
     "title": "الفقر أحد أسباب تأخر النمو العقلي", "author": "القاهرة: «الشرق الأوسط»",
     "content": "توصلت دراسة جديدة إلى أن الفقر يؤثر على مخ الأطفال.\nونشرت الدراسة في مجلة طبية."},
    {"source": "sabq", "url": "http://sabq.org/2", "date_extracted": "2015-07-22 09:12:00", "title": "",
     "author": "", "content": "أعلنت الهيئة العامة للأرصاد عن موجة حر تشمل المنطقة الشرقية."},
    {"source": "okaz", "url": "http://okaz.com.sa/3", "date_extracted": "2015-07-22 10:00:00",
     "title": "خبر بلا نص", "author": "", "content": ""},
    {"source": "alriyadh", "url": "http://www.alriyadh.com/4", "date_extracted": "2015-07-22 11:30:00",
     "title": "افتتاح معرض الكتاب", "author": "الرياض - واس", "content": "  \n "},
]


def write_zip(path: Path, members: dict[str, str | bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def day_zip(tmp_path: Path, rows: list[dict[str, str]] = DAY, name: str = "2015-07-22") -> Path:
    return write_zip(tmp_path / f"{name}.zip", {f"{name}.json": json.dumps(rows, ensure_ascii=False, indent=2)})


def articles_and_skipped(items: list[Article | Skipped]) -> tuple[list[Article], list[Skipped]]:
    return [i for i in items if isinstance(i, Article)], [i for i in items if isinstance(i, Skipped)]


def test_a_zipped_json_array_with_saudinewsnet_fields_reads_as_articles(tmp_path: Path) -> None:
    archive = day_zip(tmp_path)
    articles, _ = articles_and_skipped(list(read_path(archive, MAX)))
    first, second = articles
    assert first.title == "الفقر أحد أسباب تأخر النمو العقلي"
    assert first.text == DAY[0]["content"]
    assert first.date == date(2015, 7, 22)  # the day of "2015-07-22 00:05:53"
    assert (first.url, first.source, first.author) == (DAY[0]["url"], "aawsat", "القاهرة: «الشرق الأوسط»")
    assert (second.title, second.author) == ("", None)  # empty title and author: none
    # No id in the records: one from the outlet and a hash of the URL.
    assert re.fullmatch(r"aawsat-[0-9a-f]{16}", first.id) and re.fullmatch(r"sabq-[0-9a-f]{16}", second.id)


def test_articles_with_empty_content_are_skipped_as_empty(tmp_path: Path) -> None:
    archive = day_zip(tmp_path)
    _, skipped = articles_and_skipped(list(read_path(archive, MAX)))
    assert [(s.path, s.reason) for s in skipped] == [
        (f"{archive}/2015-07-22.json#3", "empty"), (f"{archive}/2015-07-22.json#4", "empty")]


def test_ids_are_the_same_on_every_read_from_the_url_else_the_file_and_position(tmp_path: Path) -> None:
    archive = day_zip(tmp_path)
    assert [i.id for i in read_path(archive, MAX) if isinstance(i, Article)] == \
        [i.id for i in read_path(archive, MAX) if isinstance(i, Article)]
    export = tmp_path / "newsroom export.json"
    export.write_text(json.dumps([{"body": "نص أول."}, {"body": "نص ثان.", "id": "https://x.org/a/2"},
                                  {"body": "نص ثالث.", "id": "story-3"}, {"body": "نص رابع.", "guid": "urn:x:4"}]),
                      encoding="utf-8")
    ids = [a.id for a in read_path(export, MAX) if isinstance(a, Article)]
    assert ids[0] == "newsroom_export-000001"  # nothing to go by but the file and the place in it
    assert re.fullmatch(r"x\.org-[0-9a-f]{16}", ids[1])  # an id that is a URL is hashed (no "/" in an id)
    assert ids[2] == "story-3"  # a valid id is kept
    assert re.fullmatch(r"doc-[0-9a-f]{16}", ids[3])
    assert ids == [a.id for a in read_path(export, MAX) if isinstance(a, Article)]


def test_a_json_array_with_a_non_object_element_skips_just_that_element(tmp_path: Path) -> None:
    f = tmp_path / "batch.json"
    f.write_text('[{"id": "a", "text": "نص أ."}, "a string", 42, null, {"id": "b", "text": "نص ب."}]', encoding="utf-8")
    articles, skipped = articles_and_skipped(list(read_path(f, MAX)))
    assert [a.id for a in articles] == ["a", "b"]
    assert [(s.path, s.reason) for s in skipped] == [(f"{f}#{n}", "not a JSON object") for n in (2, 3, 4)]


def test_one_json_object_is_one_article_and_a_wrapped_array_is_read(tmp_path: Path) -> None:
    one = tmp_path / "note.json"
    one.write_text(json.dumps({"headline": "عنوان", "article": "نص المقال.", "published": "2026-01-03T08:00:00Z"}),
                   encoding="utf-8")
    assert [(a.id, a.title, a.date) for a in read_path(one, MAX)] == [("note", "عنوان", date(2026, 1, 3))]
    newsapi = tmp_path / "top.json"  # NewsAPI's shape: the source is an object, camelCase names
    newsapi.write_text(json.dumps({"status": "ok", "articles": [
        {"source": {"id": None, "name": "BBC News"}, "title": "T", "url": "https://bbc.co.uk/1",
         "publishedAt": "2026-02-01T10:00:00Z", "content": "Text of the story."}]}), encoding="utf-8")
    (art,) = read_path(newsapi, MAX)
    assert isinstance(art, Article)
    assert (art.source, art.date, art.id.startswith("bbc.co.uk-")) == ("BBC News", date(2026, 2, 1), True)


def test_a_large_json_array_is_read_element_by_element_and_a_cut_one_keeps_what_came_before(tmp_path: Path) -> None:
    rows = [{"id": f"a{i}", "text": "نص الخبر " * 50, "n": [1.5, {"x": "]"}]} for i in range(400)]
    f = tmp_path / "big.json"
    f.write_text(json.dumps(rows, ensure_ascii=False, indent=4), encoding="utf-8")
    assert f.stat().st_size > 4 * (1 << 16)  # several reads of the stream
    assert [a.id for a in read_path(f, max_bytes=1000) if isinstance(a, Article)] == [r["id"] for r in rows]
    cut = tmp_path / "cut.json"
    cut.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    articles, skipped = articles_and_skipped(list(read_path(cut, MAX)))
    assert 150 < len(articles) < 250
    assert [s.path for s in skipped] == [str(cut)] and "invalid JSON in element" in skipped[0].reason


def test_csv_with_headline_body_published_link(tmp_path: Path) -> None:
    f = tmp_path / "export.csv"
    with f.open("w", encoding="utf-8-sig", newline="") as fh:  # Excel's "CSV UTF-8" starts with a BOM
        w = csv.writer(fh)
        w.writerow(["Headline", "Body", "Published", "Link", "Section"])
        w.writerow(["موجة حر", "تشمل موجة الحر المنطقة الشرقية.\nوتستمر ثلاثة أيام.", "Wed, 22 Jul 2015 09:12:00 +0300",
                    "https://example.org/heat", "طقس"])
        w.writerow(["بلا نص", "", "2015-07-22", "https://example.org/empty", ""])
    articles, skipped = articles_and_skipped(list(read_path(f, MAX)))
    (art,) = articles
    assert (art.title, art.date, art.url) == ("موجة حر", date(2015, 7, 22), "https://example.org/heat")
    assert art.text == "تشمل موجة الحر المنطقة الشرقية.\nوتستمر ثلاثة أيام."  # a quoted field keeps its lines
    assert re.fullmatch(r"example\.org-[0-9a-f]{16}", art.id)
    assert [(s.path, s.reason) for s in skipped] == [(f"{f}#2", "empty")]


def test_csv_saved_in_windows_1256_with_semicolons_is_read(tmp_path: Path) -> None:
    f = tmp_path / "legacy.csv"
    f.write_bytes("title;text\nعنوان قديم;نص المقال بترميز ويندوز العربي.\n".encode("cp1256"))
    assert [(a.title, a.text, a.id) for a in read_path(f, MAX)] == [
        ("عنوان قديم", "نص المقال بترميز ويندوز العربي.", "legacy-000001")]


def test_csv_without_a_text_column_is_skipped_once_saying_how_to_map_one(tmp_path: Path) -> None:
    f = tmp_path / "cms.csv"
    f.write_text("hed,story_body\nعنوان,نص\nعنوان آخر,نص آخر\n", encoding="utf-8")
    reason = skipped_reason(f)
    assert reason.startswith("no text column") and "--fields text=NAME" in reason


def test_other_field_names_are_mapped_by_the_setting(tmp_path: Path) -> None:
    f = tmp_path / "cms.csv"
    f.write_text("hed,story_body,pub_time,body\nعنوان,نص القصة.,2024-05-06 10:00:00,ملخص\n", encoding="utf-8")
    fields = IndexSettings(fields="text=story_body, title=HED,date=pub_time").field_map
    assert fields == {"text": "story_body", "title": "HED", "date": "pub_time"}
    (art,) = read_path(f, MAX, fields)
    assert isinstance(art, Article)
    # The mapped name replaces the known ones for that field: "body" is not used for the text.
    assert (art.title, art.text, art.date) == ("عنوان", "نص القصة.", date(2024, 5, 6))


@pytest.mark.parametrize(("spec", "message"), [
    ("txt=story_body", "unknown field 'txt'"), ("text", "not target=name"), ("text=a,text=b", "mapped twice")])
def test_a_bad_field_mapping_is_refused_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        IndexSettings(fields=spec)
    assert message in str(exc.value)
    if message.startswith("unknown"):
        assert "id, title, text, date, source, url, author" in str(exc.value)


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"
     xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">
<channel>
  <title>صحيفة المثال</title><link>https://example.org/</link>
  <item>
    <title>اجتماع في القاهرة</title>
    <link>https://example.org/news/1</link>
    <guid isPermaLink="false">example-1</guid>
    <pubDate>Wed, 22 Jul 2015 23:30:00 +0300</pubDate>
    <dc:creator>محمد علي</dc:creator>
    <media:content url="https://example.org/1.jpg" medium="image"><media:title>صورة</media:title></media:content>
    <description>ملخص قصير</description>
    <content:encoded><![CDATA[<p>عقد الوسطاء <b>اجتماعا</b> في القاهرة.</p><script>track()</script>
      <p>وبحثوا&nbsp;التهدئة.<br/>سطر آخر</p>]]></content:encoded>
  </item>
  <item>
    <title>خبر ثان</title><link>https://example.org/news/2</link>
    <description>&lt;p&gt;نص &amp;amp; وصف.&lt;/p&gt;</description>
  </item>
  <item><title>عنوان فقط</title><link>https://example.org/news/3</link></item>
</channel>
</rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Example Wire</title>
  <link href="https://wire.example.com/"/>
  <entry>
    <title type="html">Talks &lt;i&gt;resume&lt;/i&gt;</title>
    <link rel="self" href="https://wire.example.com/api/1"/>
    <link rel="alternate" href="https://wire.example.com/stories/1"/>
    <id>tag:wire.example.com,2026:1</id>
    <updated>2026-01-04T08:00:00Z</updated>
    <published>2026-01-03T22:00:00-05:00</published>
    <author><name>Jane Doe</name><email>jane@example.com</email></author>
    <summary>Short.</summary>
    <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Negotiators met.</p><p>They agreed.</p></div>
    </content>
  </entry>
</feed>
"""


def test_rss_items_are_articles_with_html_made_plain(tmp_path: Path) -> None:
    f = tmp_path / "example.rss"
    f.write_text(RSS, encoding="utf-8")
    articles, skipped = articles_and_skipped(list(read_path(f, MAX)))
    first, second = articles
    assert first.title == "اجتماع في القاهرة"
    assert first.text == "عقد الوسطاء اجتماعا في القاهرة.\nوبحثوا التهدئة.\nسطر آخر"  # full content, not summary
    assert first.date == date(2015, 7, 22)  # the publisher's day, not UTC's
    assert (first.url, first.author, first.source) == ("https://example.org/news/1", "محمد علي", "صحيفة المثال")
    assert re.fullmatch(r"example\.org-[0-9a-f]{16}", first.id)  # from the GUID (hashed: GUIDs are often URLs)
    assert second.text == "نص & وصف."  # escaped HTML in the description
    assert [(s.path, s.reason) for s in skipped] == [(f"{f}#3", "empty")]
    assert [a.id for a in read_path(f, MAX) if isinstance(a, Article)] == [first.id, second.id]


def test_atom_entries_are_articles(tmp_path: Path) -> None:
    f = tmp_path / "wire.xml"  # .xml: read as a feed because its root is <feed>
    f.write_text(ATOM, encoding="utf-8")
    (art,) = read_path(f, MAX)
    assert isinstance(art, Article)
    assert (art.title, art.text) == ("Talks resume", "Negotiators met.\nThey agreed.")
    assert (art.url, art.author, art.source) == ("https://wire.example.com/stories/1", "Jane Doe", "Example Wire")
    assert art.date == date(2026, 1, 3)  # published, before updated
    assert re.fullmatch(r"wire\.example\.com-[0-9a-f]{16}", art.id)


def test_xml_that_is_not_a_feed_and_broken_xml_are_skipped(tmp_path: Path) -> None:
    other = tmp_path / "sitemap.xml"
    other.write_text('<?xml version="1.0"?><urlset><url><loc>https://x</loc></url></urlset>', encoding="utf-8")
    assert skipped_reason(other) == "not an RSS or Atom feed (the document is <urlset>)"
    broken = tmp_path / "broken.rss"
    broken.write_text("this is not xml at all", encoding="utf-8")
    assert skipped_reason(broken).startswith("not XML")


def test_a_feed_cannot_read_local_files_or_expand_entities(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET", encoding="utf-8")
    f = tmp_path / "evil.rss"
    f.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}"><!ENTITY a "AAAAAAAAAA"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>
<rss version="2.0"><channel><title>t</title>
<item><title>x</title><link>https://e.org/1</link><description>before &xxe; &b; after</description></item>
</channel></rss>""", encoding="utf-8")
    items = list(read_path(f, MAX))
    assert any(isinstance(i, Article) for i in items)
    assert all("TOPSECRET" not in (i.text if isinstance(i, Article) else i.reason) for i in items)
    assert all("AAAA" not in i.text for i in items if isinstance(i, Article))


def test_a_zip_with_bad_members_keeps_the_others(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "mixed.zip", {
        "day/a.json": json.dumps([{"id": "a1", "text": "نص أ."}]),
        "day/broken.json": '[{"id": "b1", "text": "نص ب."}, {"id": ',
        "day/image.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "day/photo.png": b"\x89PNG",
        "day/c.jsonl": '{"id": "c1", "text": "نص ج."}\n',
        "day/d.md": "---\ntitle: عنوان د\n---\nنص د.\n",
        "day/crc.txt": "عنوان\nنص سيتلف في الأرشيف.\n",
        "__MACOSX/day/._a.json": b"\x00\x05\x16\x07",
        "day/.DS_Store": b"\x00\x00\x00\x01Bud1",
    }, method=zipfile.ZIP_STORED)
    # Damage one member's bytes in place: its CRC check fails, the others are still read.
    raw = bytearray(archive.read_bytes())
    at = raw.index("سيتلف".encode())
    raw[at] ^= 0xFF
    archive.write_bytes(bytes(raw))
    articles, skipped = articles_and_skipped(list(read_path(archive, MAX)))
    assert [a.id for a in articles] == ["a1", "b1", "c1", "d"]
    reasons = {s.path.removeprefix(f"{archive}/"): s.reason for s in skipped}
    assert set(reasons) == {"day/broken.json", "day/image.txt", "day/photo.png", "day/crc.txt"}
    assert reasons["day/broken.json"].startswith("invalid JSON in element 2")
    assert reasons["day/image.txt"] == "binary file"
    assert reasons["day/photo.png"] == "unsupported file type '.png'"
    assert "CRC" in reasons["day/crc.txt"]


def test_a_zip_bomb_member_is_skipped_without_being_inflated(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "bomb.zip", {
        "ok.txt": "عنوان\nنص قصير.\n",
        "zeros.txt": b" " * 1_000_000,  # a thousand times the limit, a few KB compressed
        "lines.jsonl": b"{}" + b" " * 5_000_000,  # over the 50x limit of a collection member
    })
    assert archive.stat().st_size < 20_000
    items = list(read_path(archive, max_bytes=1000))
    assert [i.id for i in items if isinstance(i, Article)] == ["ok"]
    reasons = {s.path: s.reason for s in items if isinstance(s, Skipped)}
    assert reasons == {f"{archive}/zeros.txt": "too large (1000000 bytes uncompressed > 1000)",
                       f"{archive}/lines.jsonl": "too large (5000002 bytes uncompressed > 50000)"}


def test_a_file_that_is_not_a_zip_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "fake.zip"
    f.write_bytes(b"PK\x03\x04 not really")
    assert skipped_reason(f) == "not a zip archive (or a damaged one)"


@pytest.mark.skipif(not SAUDINEWSNET_DAY.exists(), reason="the SaudiNewsNet sample is not on this machine")
def test_a_real_saudinewsnet_day_reads_whole_with_stable_ids() -> None:
    first = list(read_path(SAUDINEWSNET_DAY, MAX))
    articles, skipped = articles_and_skipped(first)
    assert len(first) == 2050
    assert len(skipped) == 12 and {s.reason for s in skipped} == {"empty"}
    assert len({a.id for a in articles}) == 2038
    assert all(a.date == date(2015, 7, 22) and a.source and a.url for a in articles)
    assert [a.id for a in articles] == [i.id for i in read_path(SAUDINEWSNET_DAY, MAX) if isinstance(i, Article)]


# -- sanad index on an archive -----------------------------------------------------------------------------------


def test_sanad_index_on_a_zip_indexes_its_articles_and_a_second_run_finds_them_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sanad.cli import app

    monkeypatch.chdir(tmp_path)  # short relative paths in the output
    rows = DAY[:2] + [{**DAY[2], "url": f"http://okaz.com.sa/empty/{i}"} for i in range(12)]
    day_zip(tmp_path, rows)
    runner = CliRunner()
    first = runner.invoke(app, ["index", "2015-07-22.zip", "--data-dir", "data"])
    assert first.exit_code == 0, first.stderr
    out = " ".join(first.stdout.split())
    assert "2 documents (2 added, 0 updated, 0 unchanged)" in out and "12 skipped" in out
    # Many skipped items: the first few, then a count per reason instead of a line each.
    listed = [f"skipped 2015-07-22.zip/2015-07-22.json#{n}: empty" for n in range(3, 8)]
    lines = [line for line in first.stderr.splitlines() if line.strip()]
    assert lines[:7] == [*listed, "… and 7 more skipped; all 12 by reason:", "  12 skipped: empty"]
    assert "searchable now" in lines[7]  # then the dense pass
    again = runner.invoke(app, ["index", "2015-07-22.zip", "--data-dir", "data"])
    assert again.exit_code == 0
    assert "2 documents (0 added, 0 updated, 2 unchanged)" in " ".join(again.stdout.split())


def test_sanad_index_fields_maps_other_names_and_refuses_an_unknown_target(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sanad.cli import app

    f = tmp_path / "cms.jsonl"
    f.write_text(json.dumps({"story_id": "s1", "hed": "عنوان", "story_body": "نص القصة في الحقل الآخر."},
                            ensure_ascii=False) + "\n", encoding="utf-8")
    runner = CliRunner()
    data = str(tmp_path / "data")
    mapping = "id=story_id,title=hed,text=story_body"
    done = runner.invoke(app, ["index", str(f), "--fields", mapping, "--data-dir", data])
    assert done.exit_code == 0, done.stderr
    assert "1 documents (1 added" in done.stdout
    docs = json.loads(runner.invoke(app, ["documents", "--json", "--data-dir", data]).stdout)
    assert [(d["doc_id"], d["title"]) for d in docs] == [("s1", "عنوان")]
    refused = runner.invoke(app, ["index", str(f), "--fields", "body=story_body", "--data-dir", data])
    assert refused.exit_code == 2
    assert "--fields: unknown field 'body'" in " ".join(refused.stderr.split())

"""What an English reader can be told of an Arabic sentence without a translation model: its dates,
weekdays, numbers and the words written in Latin letters, stated in English.

Month and weekday names are the standard Arabic ones (Egyptian/Gulf and Levantine); nothing here
is specific to a corpus.
"""

from __future__ import annotations

import re

from rag.text import fold

_MONTHS = {
    "يناير": "January", "فبراير": "February", "مارس": "March", "ابريل": "April", "مايو": "May", "يونيو": "June",
    "يونيه": "June", "يوليو": "July", "يوليه": "July", "اغسطس": "August", "سبتمبر": "September",
    "اكتوبر": "October", "نوفمبر": "November", "ديسمبر": "December", "كانون الثاني": "January", "شباط": "February",
    "اذار": "March", "نيسان": "April", "ايار": "May", "حزيران": "June", "تموز": "July", "اب": "August",
    "ايلول": "September", "تشرين الاول": "October", "تشرين الثاني": "November", "كانون الاول": "December",
}
_WEEKDAYS = {
    "الاثنين": "Monday", "الثلاثاء": "Tuesday", "الاربعاء": "Wednesday", "الخميس": "Thursday", "الجمعه": "Friday",
    "السبت": "Saturday", "الاحد": "Sunday",
}
_MONTH_RE = "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True))
_DATE = re.compile(
    rf"(?:(\d{{1,2}})\s+)?(?:[وب]?(?:شهر\s+)?)({_MONTH_RE})(?=\s|$|[^\w])(?:\s+(?:عام\s+|سنه\s+)?(\d{{4}}))?"
)
_WEEKDAY = re.compile(r"(?:^|\s)[وب]?(?:يوم\s+)?(" + "|".join(_WEEKDAYS) + r")(?=\s|$|[^\w])")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9&.\-]*(?:\s+[A-Z][A-Za-z0-9&.\-]*)*")


def english_facts(sentence: str) -> list[str]:
    """Dates, weekdays, numbers and Latin-script names of an Arabic ``sentence``, in English, in order."""
    folded = fold(sentence)
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for m in _DATE.finditer(folded):
        day, month, year = m.group(1), _MONTHS[m.group(2)], m.group(3)
        if not day and not year and m.group(2) in ("اب", "مايو", "مارس"):
            continue  # also ordinary words ("father", and a bare month name says little)
        found.append((m.start(), " ".join(x for x in (day, month, year) if x)))
        taken.append(m.span())
    for m in _WEEKDAY.finditer(folded):
        found.append((m.start(1), _WEEKDAYS[m.group(1)]))
    for m in _NUMBER.finditer(folded):
        if not any(a <= m.start() < b for a, b in taken):
            found.append((m.start(), m.group()))
    latin = [(m.start(), m.group().strip(" .-")) for m in _LATIN.finditer(sentence) if len(m.group().strip()) > 1]
    out: list[str] = []
    for _, text in sorted(found) + latin:
        if text and text not in out:
            out.append(text)
    return out

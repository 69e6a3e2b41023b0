"""Gold items: questions with the facts a correct answer must state and the documents that hold them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.models import Language, Turn


class GoldItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    lang: Language
    question: str = Field(min_length=1)
    turns: list[Turn] = Field(default_factory=list)
    facts: list[list[str]] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    answerable: bool = True
    # "dev": thresholds may be fitted on it; "test": reported, gated, never fitted on.
    split: Literal["dev", "test"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GoldItem:
        if not self.question.strip():
            raise ValueError("question is empty")
        if any(not alts or not all(a.strip() for a in alts) for alts in self.facts):
            raise ValueError("a fact needs at least one non-empty alternative")
        if self.answerable and not self.sources:
            raise ValueError("an answerable item needs at least one source")
        if not self.answerable and (self.facts or self.sources):
            raise ValueError("an unanswerable item has no facts and no sources")
        return self


class GoldError(ValueError):
    """Every bad line of a gold file, each with its line number."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} bad line(s)\n" + "\n".join(problems))


def load_gold(path: Path) -> list[GoldItem]:
    """Parse a whole gold file first; any bad line stops the run before it starts."""
    items: list[GoldItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldError(path, [f"cannot read: {exc}"]) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = GoldItem.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(f"line {lineno}: malformed JSON ({exc.msg})")
            continue
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"]) or "item"
                msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
                problems.append(f"line {lineno}: {where}: {msg}")
            continue
        if item.id in seen:
            problems.append(f"line {lineno}: duplicate id '{item.id}'")
        seen.add(item.id)
        items.append(item)
    if problems:
        raise GoldError(path, problems)
    if not items:
        raise GoldError(path, ["no items"])
    return items

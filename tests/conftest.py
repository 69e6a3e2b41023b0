"""Shared fixtures: fresh settings per test, and one engine with the seed articles indexed per module.

Kept generic on purpose: service tests build their own apps on top of these or of their own fixtures.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from index.ingest import Indexer
from rag.engine import Sanad
from rag.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.txt"))
# Content-addressed, so sharing it between runs is safe; under the system temp folder, never in the repo.
VECTOR_CACHE = Path(tempfile.gettempdir()) / "sanad-test-vectors.sqlite3"
REFUSAL_AR = "لا تتضمن المقالات المتاحة إجابة عن هذا السؤال."

# Property tests are deterministic by default: the same examples on every run and machine, no example
# database carried between runs. Before a release, `HYPOTHESIS_PROFILE=release pytest tests/test_fuzz.py
# tests/test_chunking.py` draws fresh random examples, 20 times as many (see the README, Quick start).
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("release", derandomize=False, database=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
hypothesis_settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``n`` generated examples in CI, 20 times as many in the release profile."""
    return n * 20 if PROFILE == "release" else n


def read_seed(doc_id: str) -> str:
    """A seed article's text exactly as the reader decodes it (offsets refer to this)."""
    return (SEEDS / f"{doc_id}.txt").read_bytes().decode("utf-8-sig")


def index_seeds(engine: Sanad, settings: Settings) -> None:
    summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([SEEDS])
    assert summary.documents == len(SEED_IDS) and not summary.skipped, summary


@pytest.fixture(scope="session", autouse=True)
def _no_sanad_env() -> Iterator[None]:
    """A developer's SANAD_* variables (an LLM URL, a data dir) must not leak into the tests."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("SANAD_"):
                mp.delenv(key)
        # One vector cache for the whole run: the bundled encoder computes each passage's vector once.
        mp.setenv("SANAD_EMBED__CACHE_PATH", str(VECTOR_CACHE))
        yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Offline settings on an in-memory store, state under a fresh folder."""
    return Settings.in_memory(tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Sanad]:
    """An empty engine on ``settings``."""
    eng = Sanad.open(settings)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def seeded_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    """The offline engine with the seed articles indexed; built once per module, treat as read-only."""
    settings = Settings.in_memory(tmp_path_factory.mktemp("seeded"))
    eng = Sanad.open(settings)
    index_seeds(eng, settings)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for this test session (skips the tests that need one where it cannot start)."""
    from tests.postgres import server

    try:
        with server() as pg:
            yield pg.url
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """An empty PostgreSQL database of this test's own."""
    from tests.postgres import new_database

    return new_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn: ``None`` (SQLite files under the data folder) and a PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))

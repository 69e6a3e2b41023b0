"""``serve``: one uvicorn process (one worker) owning the store; ``sanad serve`` calls it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import uvicorn

from rag.engine import Sanad
from rag.settings import Settings
from rag.store import StoreError
from service.app import create_app
from service.owner import public_url, remove_owner

log = logging.getLogger("sanad.service")


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the service until interrupted. Exits non-zero (with the reason on stderr) if it cannot start,
    e.g. another server already owns the data directory's store."""
    settings = settings.model_copy(update={"service": settings.service.model_copy(update={"host": host, "port": port})})
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    try:
        engine = Sanad.open(settings)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    try:
        _hint_if_empty(engine)
        config = uvicorn.Config(create_app(settings, engine), host=host, port=port, workers=1,
                                log_level="info", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        log.info("Sanad on %s (data: %s)", public_url(settings), settings.data_dir)
        server.run()
        if not server.started:
            print(f"error: the server did not start on {host}:{port} (see the log above)", file=sys.stderr)
            raise SystemExit(1)
    finally:
        engine.close()
        remove_owner(settings)


def _hint_if_empty(engine: Sanad) -> None:
    try:
        empty = engine.store.count_chunks() == 0
    except Exception:  # the readiness probe reports store trouble
        return
    if not empty:
        return
    if Path("seeds").is_dir():
        log.warning("The index is empty. Index the sample articles with `sanad index seeds` (server stopped) "
                    "or upload them to POST /v1/documents while it runs.")
    else:
        log.warning("The index is empty: upload articles to POST /v1/documents.")

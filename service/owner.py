"""``<data_dir>/sanad-server.json``: which server process owns the embedded store.

``rag.store`` reads it to name the running server when a second process
(another ``sanad serve``, or ``sanad index``) finds the store locked.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from rag.settings import Settings
from rag.store import OWNER_FILE

log = logging.getLogger("sanad.service")


def owner_path(settings: Settings) -> Path:
    return settings.data_dir / OWNER_FILE


def public_url(settings: Settings) -> str:
    host = settings.service.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.service.port}"


def write_owner(settings: Settings) -> Path:
    path = owner_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "url": public_url(settings),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)
    return path


def remove_owner(settings: Settings) -> None:
    """Remove the file if this process wrote it."""
    path = owner_path(settings)
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if info.get("pid") == os.getpid():
        try:
            path.unlink()
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)

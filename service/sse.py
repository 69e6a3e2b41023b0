"""Server-sent events: ``event: <name>`` + one line of JSON ``data``."""

from __future__ import annotations

import json
from typing import Any

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"


def event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def data_only(data: Any) -> str:
    """An unnamed event, as the OpenAI streaming protocol sends them."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"

"""Reading server-sent events in tests."""

from __future__ import annotations

import json
from typing import Any


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """``[(event, data), ...]`` from a text/event-stream body (unnamed events are ``message``)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        raw = "\n".join(data)
        events.append((name, raw if raw == "[DONE]" else json.loads(raw)))
    return events

"""The CLI as a client of the server that holds the data folder.

Only one process can open the embedded store. When ``sanad serve`` holds it, the
server names itself in ``<data_dir>/sanad-server.json``, and ``sanad ask``,
``documents`` and ``index`` send their work to it over the API instead of
stopping with "in use". Kept free of the engine's imports (llama-index,
qdrant-client), so a command that goes to the server starts fast.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from index.readers import IndexSummary, Skipped
from rag.models import Answer, SearchFilters
from rag.settings import Settings

OWNER_FILE = "sanad-server.json"  # written by service/owner.py; rag.store.OWNER_FILE (not imported: it is heavy)


@dataclass
class Server:
    url: str
    pid: int


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def running_server(settings: Settings) -> Server | None:
    """The live server that holds this data folder's embedded store, if any."""
    if settings.qdrant.url or settings.qdrant_path == ":memory:":
        return None  # a Qdrant server is shared: the CLI opens it itself
    try:
        info = json.loads((settings.data_dir / OWNER_FILE).read_text())
        url, pid = str(info["url"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not _alive(pid):
        return None  # a file left by a server that was killed
    return Server(url=url, pid=pid)


class RemoteError(Exception):
    """The server refused or could not be reached; the message says which and why."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _local_item(f: Path, item: str) -> str:
    """A skipped item the server named after the upload (``a.zip/b.json#3``, ``a.jsonl:2``) under the local path
    it came from, as `sanad index` without a server names it (the archive once); anything else (an article id)
    as ``path:item``."""
    name = f.name
    if item == name or (item.startswith(name) and item[len(name)] in "/:#"):
        return str(f) + item[len(name):]
    return f"{f}:{item}"


class SanadClient:
    """The few API calls the CLI makes, with the server's own error messages."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SanadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"the server at {self.url} did not answer: {exc}") from None
        if r.status_code >= 400:
            code, message = None, r.text.strip()[:300]
            try:
                detail = r.json()["error"]
                code, message = detail.get("code"), detail.get("message", message)
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
            if r.status_code == 401:
                message += " Set SANAD_API_KEY to one of the server's SANAD_API_KEYS."
            raise RemoteError(f"the server at {self.url} answered {r.status_code}: {message}", r.status_code, code)
        return r

    def ask(self, question: str, session_id: str | None = None, top_k: int | None = None,
            filters: SearchFilters | None = None) -> Answer:
        body: dict[str, Any] = {"question": question}
        if session_id:
            body["session_id"] = session_id
        if top_k:
            body["top_k"] = top_k
        if filters is not None:
            body["filters"] = filters.model_dump(mode="json", exclude_none=True)
        return Answer.model_validate(self._call("POST", "/v1/chat", json=body).json())

    def documents(self, page: int = 1000) -> list[dict[str, Any]]:
        """Every indexed article's record, fetched a page at a time."""
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            body = self._call("GET", "/v1/documents", params={"limit": page, "offset": offset}).json()
            out += body["documents"]
            offset = body.get("next_offset")
        return out

    def index_files(self, files: list[Path], on_file: Any = None) -> IndexSummary:
        """Upload each file; the server reads it as ``sanad index`` would. A refused file is skipped."""
        summary = IndexSummary()
        t0 = time.perf_counter()
        for f in files:
            try:
                with f.open("rb") as fh:
                    r = self._call("POST", "/v1/documents", files={"file": (f.name, fh)})
            except OSError as exc:
                summary.skipped.append(Skipped(str(f), f"cannot read: {exc.strerror or exc}"))
            except RemoteError as exc:
                if exc.status is None or exc.status in (401, 429) or exc.status >= 500:
                    raise  # the server, not the file: stop and say so
                summary.skipped.append(Skipped(str(f), str(exc).split(": ", 1)[-1]))
            else:
                body = r.json()
                for d in body["documents"]:
                    summary.count(d["outcome"], int(d["chunks"]))
                summary.skipped.extend(Skipped(_local_item(f, s["item"]), s["reason"]) for s in body.get("skipped", []))
            if on_file is not None:
                on_file(f)
        summary.seconds = time.perf_counter() - t0
        return summary

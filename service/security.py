"""API keys (``SANAD_API_KEYS``) and the per-client rate limit."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Always open: liveness, readiness, the chat page and the API docs; Slack's events carry
# Slack's own signature instead of a bearer key (the bot checks it).
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                          "/favicon.ico"})
DOCS_STATIC = "/docs-static"  # Swagger UI and ReDoc assets, served by the app itself
PUBLIC_PREFIXES = ("/static/", "/slack/", DOCS_STATIC + "/")
# Rate-limited: the API proper (not the probes, the page or the metrics scrape).
LIMITED_PREFIXES = ("/v1/",)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_limited(path: str) -> bool:
    return path.startswith(LIMITED_PREFIXES)


class ApiKeys:
    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = [k.encode() for k in sorted(keys)]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> str | None:
        """The client id (a digest of the key) for a valid ``Bearer`` header, else ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode()
        ok = False
        for key in self._keys:  # compare with every key: timing does not tell which one nearly matched
            ok |= hmac.compare_digest(given, key)
        if not ok:
            return None
        return "key:" + hashlib.sha256(given).hexdigest()[:16]


class Limiter:
    """A token bucket per client: ``per_minute`` requests, refilled continuously; 0 disables it. Kept in memory
    (:class:`RateLimiter`) or in the shared database (``service.coordination.SharedRateLimiter``, ``blocking``:
    a round trip, called off the event loop)."""

    blocking = False

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, client: str) -> float:
        """Spend one token; returns 0 if allowed, else the seconds until one is available."""
        raise NotImplementedError


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter(Limiter):
    """The buckets in this process's memory (one process: the SQLite default)."""

    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(per_minute)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= self.MAX_CLIENTS:
                    self._prune(now)
                bucket = self._buckets[client] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket has refilled (they lose nothing)."""
        full = [c for c, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.capacity]
        for c in full:
            del self._buckets[c]
        if len(self._buckets) >= self.MAX_CLIENTS:  # all busy: drop the oldest
            for c in sorted(self._buckets, key=lambda c: self._buckets[c].stamp)[: self.MAX_CLIENTS // 10]:
                del self._buckets[c]


class ClientAddress:
    """The client's IP: the peer, or, when the peer is a trusted proxy, the nearest X-Forwarded-For address
    that is not one (a client can put anything at the start of that header, never at its end)."""

    def __init__(self, trusted: str) -> None:
        self.networks = [ipaddress.ip_network(t.strip(), strict=False) for t in trusted.split(",") if t.strip()]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        address = peer or "unknown"
        if not self.networks or not self._trusted(address) or not forwarded_for:
            return address
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._trusted(hop):
                return hop
        return address


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

"""What went wrong with one HTTP call, whether a retry can help, and how long to wait:
full-jitter backoff, `Retry-After` (seconds or an HTTP date), the per-call deadline."""

from __future__ import annotations

import random
import re
import time
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from gra_local.backends.endpoint.config import Tuning

FaultKind = Literal["refused", "connection", "timeout", "server", "busy", "malformed", "rejected",
                    "too_long"]
_TOO_LONG = re.compile(r"context[ _](length|window|size)|maximum context|exceeds? (the )?"
                       r"(available )?context|too many tokens|prompt is too long", re.I)
"""How servers word a prompt too long for the context: llama-cpp-python ("Requested tokens
(N) exceed context window of M"), llama-server ("the request exceeds the available context
size"), vLLM ("This model's maximum context length is N tokens"), OpenAI
("context_length_exceeded")."""


class Fault(Exception):
    """One failed attempt. `detail` is credential-free (redacted by whoever made it)."""

    def __init__(self, kind: FaultKind, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.kind: FaultKind = kind
        self.detail = detail
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.detail

    @property
    def retryable(self) -> bool:
        """A 4xx other than 429 is the request's own problem: sending it again cannot help."""
        return self.kind not in ("rejected", "too_long")

    @property
    def server_fault(self) -> bool:
        """Counts toward benching the server (a 429 benches it only for its Retry-After)."""
        return self.kind not in ("busy", "rejected", "too_long")


def transport_fault(exc: Exception) -> Fault:
    """The fault of an httpx transport error or a missed deadline (asyncio's TimeoutError)."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Fault("refused", f"cannot connect ({_reason(exc, 'connection refused')})")
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return Fault("timeout", "no reply before the call's deadline")
    return Fault("connection", f"connection lost ({_reason(exc, type(exc).__name__)})")


def _reason(exc: Exception, default: str) -> str:
    """The OS's words (e.g. "[Errno 111] Connection refused"), never a URL."""
    text = str(exc).strip()
    return text if text and "://" not in text and len(text) < 120 else default


def status_fault(status: int, headers: httpx.Headers, body: bytes, now: float | None = None) -> Fault:
    """The fault of a non-2xx reply."""
    if status == 429:
        wait = retry_after_s(headers.get("retry-after"), now)
        return Fault("busy", "HTTP 429 (too many requests)", wait)
    if status >= 500 or status == 408:
        return Fault("server", f"HTTP {status}")
    snippet = body[:160].decode("utf-8", "replace").replace("\n", " ").strip()
    if 400 <= status < 500 and _TOO_LONG.search(body[:2000].decode("utf-8", "replace")):
        return Fault("too_long", f"HTTP {status}: {snippet}")
    return Fault("rejected", f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}")


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for: a number of seconds or an HTTP date;
    None when absent or unreadable; never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(retry: int, tuning: Tuning, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(cap, base·2^retry)) before retry number `retry` (0-based)."""
    return rng.uniform(0.0, min(tuning.backoff_cap_s, tuning.backoff_base_s * 2 ** retry))


def deadline_s(max_tokens: int, tok_s: float | None, tuning: Tuning) -> float:
    """How long one call may take: max(min_deadline_s, factor × max_tokens ÷ tokens/s),
    the speed measured from the server's completed calls (queueing included)."""
    speed = tok_s if tok_s and tok_s > 0 else tuning.assumed_tok_s
    return max(tuning.min_deadline_s, tuning.deadline_factor * max_tokens / speed)

"""Canary items for reviewer calibration: known-good pairs and code-made corruptions of
them. Pure functions: no model, no file.

A reviewer that is worth its vote passes a known-good pair and scores it at or above τ,
and fails or scores below τ an answer that was swapped for another sample's, cut short,
had its numbers changed, or comes from another domain than its instruction.
"""

from __future__ import annotations

import random
import re
from enum import Enum

from pydantic import BaseModel, Field

_NUMBER = re.compile(r"(?<![\w.])(\d+)(?:\.(\d+))?(?![\w])")
MIN_WORDS_TO_TRUNCATE = 8


class CanaryKind(str, Enum):
    GOOD = "good"
    SWAPPED = "swapped"  # the answer of another sample
    TRUNCATED = "truncated"  # cut to 20–50 % at a word boundary
    NUMBERS_CHANGED = "numbers_changed"  # every number changed
    CROSS_DOMAIN = "cross_domain"  # instruction and answer from different domains


class CanarySource(BaseModel):
    """A pair given as good: a seed with its response (or, in review-only mode, a pair of
    the input)."""

    id: str
    instruction: str
    response: str
    domain: str = ""


class Canary(BaseModel):
    id: str
    kind: CanaryKind
    instruction: str
    response: str
    domain: str
    sources: list[str] = Field(default_factory=list)
    expected_good: bool


def change_numbers(text: str, rng: random.Random) -> str:
    """Every number in `text` replaced by a different one of the same shape (42 → 47,
    3.5 → 4.5); the text is returned unchanged only when it holds no number."""

    def repl(m: re.Match[str]) -> str:
        whole, frac = m.group(1), m.group(2)
        value = int(whole)
        new = value + rng.choice([-3, -2, -1, 1, 2, 3, 5])
        if new < 0 or new == value:
            new = value + 1
        return f"{new}" + (f".{frac}" if frac is not None else "")

    return _NUMBER.sub(repl, text)


def truncate(text: str, rng: random.Random) -> str | None:
    """The first 20–50 % of the words; None for answers too short to cut meaningfully."""
    words = text.split()
    if len(words) < MIN_WORDS_TO_TRUNCATE:
        return None
    keep = max(1, int(len(words) * rng.uniform(0.2, 0.5)))
    return " ".join(words[:keep])


def _other(sources: list[CanarySource], src: CanarySource, rng: random.Random,
           other_domain: bool) -> CanarySource | None:
    pool = [s for s in sources if s.id != src.id and s.response.strip() != src.response.strip()
            and s.instruction != src.instruction]
    if other_domain:
        pool = [s for s in pool if s.domain and src.domain and s.domain != src.domain]
    else:  # prefer another domain: the swap is then plainly wrong
        different = [s for s in pool if s.domain != src.domain]
        pool = different or pool
    return rng.choice(pool) if pool else None


def _corrupt(kind: CanaryKind, src: CanarySource, sources: list[CanarySource],
             rng: random.Random) -> tuple[str, list[str]] | None:
    """(response, source ids) for one corruption of `src`, or None when it cannot be made."""
    if kind in (CanaryKind.SWAPPED, CanaryKind.CROSS_DOMAIN):
        other = _other(sources, src, rng, other_domain=kind is CanaryKind.CROSS_DOMAIN)
        return (other.response, [src.id, other.id]) if other else None
    if kind is CanaryKind.TRUNCATED:
        cut = truncate(src.response, rng)
        return (cut, [src.id]) if cut else None
    changed = change_numbers(src.response, rng)
    return (changed, [src.id]) if changed != src.response else None


def make_canaries(sources: list[CanarySource], rng: random.Random, n: int) -> list[Canary]:
    """About half known-good, half corrupted, deterministic for a given `rng` state.

    Kinds that the sources cannot produce (no digits for numbers_changed, one domain for
    cross_domain, fewer than two sources for swaps) are skipped, never faked; with fewer
    than two sources only good and self-made corruptions (truncated, numbers) remain.
    """
    usable = [s for s in sources if s.instruction.strip() and s.response.strip()]
    if n <= 0 or not usable:
        return []
    out: list[Canary] = []
    bad_kinds = [k for k in CanaryKind if k is not CanaryKind.GOOD]
    tries = 0
    while len(out) < n and tries < 20 * n:
        tries += 1
        want_good = len(out) % 2 == 0
        if want_good:
            src = rng.choice(usable)
            out.append(Canary(id=f"{len(out)}", kind=CanaryKind.GOOD, instruction=src.instruction,
                              response=src.response, domain=src.domain, sources=[src.id],
                              expected_good=True))
            continue
        kind = rng.choice(bad_kinds)
        math_first = [s for s in usable if s.domain == "math"] if kind is CanaryKind.NUMBERS_CHANGED else []
        src = rng.choice(math_first if math_first and rng.random() < 0.7 else usable)
        made = _corrupt(kind, src, usable, rng)
        if made is None:
            continue
        response, ids = made
        out.append(Canary(id=f"{len(out)}", kind=kind, instruction=src.instruction,
                          response=response, domain=src.domain, sources=ids,
                          expected_good=False))
    return out

"""Probability-weighted scores (G-Eval, Liu et al. 2023): a criterion's score is the
expected value of the score distribution the reviewer's reply was sampled from, not the
one integer it happened to sample.

The worker reports, at each score position of a grammar-bound reply, the probabilities of
the tokens the grammar allowed there (`TokenChoice`: their text and the character offset
where the chosen token begins). A score is 0–10, so its first token is a digit, or "10"
where the vocabulary has that token. A "1" is ambiguous: it may be 1 or the start of 10.
When the reply chose "1", the next position was probed too and splits the mass between
"1," (score 1) and "10"; when it chose another digit, the split is unknown and that mass is
left out, the rest renormalized. When less than MIN_COVERED of the mass is left, or the
reply carries no probes (a server that shows no token probabilities), the sampled score
stands.

The same probes give each instruction-check field its probability of "pass".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from gra_local.core.backend import TokenChoice
from gra_local.core.records import SCORE_FIELDS, VERDICT_FIELDS

SCORE_PROBES = ['":', '": ']
"""Where a scores reply is probed (`ChatRequest.probe_after`): after a key's colon and
its space, so that the value's first token is probed whether or not it carries the space."""
VERDICT_PROBES = ['":', '": ', '": "']
"""The same for a verdict, whose values open with a quote (never probed in a scores reply:
after the feedback's quote almost any token is allowed, a costly probe for nothing)."""
MIN_COVERED = 0.5
"""Least probability mass a distribution must keep after ambiguous mass is left out."""
MAX_SCORE = 10
T = TypeVar("T")


@dataclass(frozen=True)
class ScoreDistribution:
    probs: dict[int, float]
    """Score → probability (sums to 1)."""

    @property
    def expected(self) -> float:
        return math.fsum(s * p for s, p in self.probs.items())


def _value_span(text: str, field: str) -> tuple[int, int] | None:
    """(end of `"field":`, start of its value) in the reply's JSON: the value's first
    token may begin anywhere in between (a token " 8" carries the space)."""
    key = f'"{field}":'
    at = text.find(key)
    if at < 0:
        return None
    start = at + len(key)
    value = start
    while value < len(text) and text[value] in ' "':
        value += 1
    return start, value


def _probe_at(choices: list[TokenChoice], start: int, value: int) -> TokenChoice | None:
    """The last probe between the key and the value: the one the value's token came from."""
    found = [c for c in choices if start <= c.offset <= value]
    return max(found, key=lambda c: c.offset) if found else None


def _clean(piece: str) -> str:
    return piece.strip(' "')


def score_distribution(text: str, choices: list[TokenChoice], field: str) -> ScoreDistribution | None:
    """The distribution behind `field`'s score, or None when the probes do not give one."""
    span = _value_span(text, field)
    if span is None:
        return None
    first = _probe_at(choices, *span)
    if first is None:
        return None
    value = span[1]
    mass: dict[int, float] = {}
    for piece, p in first.probs.items():
        digits = _clean(piece)
        if not digits.isdigit() or int(digits) > MAX_SCORE:
            continue  # a lone space or quote: where it leads is unknown, left out
        if digits != "1":
            mass[int(digits)] = mass.get(int(digits), 0.0) + p
            continue
        nxt = None
        if text.startswith("1", value):  # the reply chose "1": the next digit was probed
            nxt = next((c for c in choices if c.offset == value + 1), None)
        if nxt is None:
            continue  # 1 or 10: unknown, left out
        zero = sum(q for t, q in nxt.probs.items() if t.startswith("0"))
        rest = sum(q for t, q in nxt.probs.items() if not t[:1].isdigit())
        if zero + rest <= 0:
            continue
        mass[10] = mass.get(10, 0.0) + p * zero / (zero + rest)
        mass[1] = mass.get(1, 0.0) + p * rest / (zero + rest)
    total = math.fsum(mass.values())
    if total < MIN_COVERED * math.fsum(first.probs.values()) or total <= 0:
        return None
    return ScoreDistribution({s: p / total for s, p in sorted(mass.items()) if p > 0})


def _every(fields: tuple[str, ...], of: Callable[[str], T | None]) -> dict[str, T] | None:
    """`of(field)` for every field, or None unless each has one (one reply's figures are
    never mixed: then the sampled values stand, all of them)."""
    out = {}
    for field in fields:
        value = of(field)
        if value is None:
            return None
        out[field] = value
    return out


def score_distributions(text: str, choices: list[TokenChoice]) -> dict[str, ScoreDistribution] | None:
    """Every criterion's distribution, or None unless all six have one."""
    return _every(SCORE_FIELDS, partial(score_distribution, text, choices)) if choices else None


def pass_probability(text: str, choices: list[TokenChoice], field: str) -> float | None:
    """P("pass") at `field`'s verdict, among the pass and fail tokens; None without a probe."""
    span = _value_span(text, field)
    choice = None if span is None else _probe_at(choices, *span)
    if choice is None:
        return None
    yes = sum(p for t, p in choice.probs.items() if _clean(t) and "pass".startswith(_clean(t)))
    no = sum(p for t, p in choice.probs.items() if _clean(t) and "fail".startswith(_clean(t)))
    return None if yes + no <= 0 else yes / (yes + no)


def pass_probabilities(text: str, choices: list[TokenChoice]) -> dict[str, float] | None:
    """Every check's P(pass), or None unless all three have one."""
    return _every(VERDICT_FIELDS, partial(pass_probability, text, choices)) if choices else None


def accept_probability(dists: dict[str, ScoreDistribution], tau: float) -> float:
    """P(mean of the criteria ≥ τ) if the criteria were independent draws from their
    distributions: the reviewer's own confidence in its accept call (routing.py)."""
    sums = {0: 1.0}
    for dist in dists.values():
        nxt: dict[int, float] = {}
        for total, p in sums.items():
            for s, q in dist.probs.items():
                nxt[total + s] = nxt.get(total + s, 0.0) + p * q
        sums = nxt
    n = len(dists)
    return math.fsum(p for total, p in sums.items() if round(total / n, 9) >= tau)

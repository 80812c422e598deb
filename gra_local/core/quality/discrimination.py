"""How well each piece of evidence discriminates, measured on the run's canary pairs.

A canary pair is an original and a corruption of that same original (core.quality.canaries),
judged by the same panel. A piece of evidence — an LLM reviewer's expected score or its
instruction checks, the relevance cosine, each likelihood signal, the arithmetic of the
written-out equations — is right on a pair when
it gives the original the higher value. This needs no trust in the original, so it holds in
review mode on data whose quality is in doubt: a reviewer that rejects a bad input pair is
not counted wrong for it, only one that ranks a corruption above what it was made from.
"""

from __future__ import annotations

import math
from collections import defaultdict
from enum import Enum

from pydantic import BaseModel

from gra_local.core.candidate import Candidate
from gra_local.core.quality import arithmetic
from gra_local.core.quality.likelihood import SIGNALS
from gra_local.core.rundir.calibration_report import Discrimination, KindDiscrimination

REVIEWER = "reviewer "
"""How every LLM reviewer's pieces are named: `reviewer <model>: scores` and `: checks`."""


def reviewer_piece(piece: str) -> tuple[str, str] | None:
    """(model, "scores" or "checks") of a reviewer's piece name; None for other pieces."""
    if not piece.startswith(REVIEWER):
        return None
    model, _, kind = piece.removeprefix(REVIEWER).rpartition(": ")
    return model, kind


LIKELIHOOD = "likelihood "
"""How each likelihood signal is named: `likelihood pmi`, …"""
RELEVANCE = "relevance"
ARITHMETIC = "arithmetic"
"""1 when every equation an answer writes out holds, 0 when one does not; no value without
an equation (core.quality.arithmetic)."""

INFORMATIVE = 0.9
"""P(pairwise accuracy > ½) at or above which a piece is informative: it may decide."""
CHANCE_LEVEL = 0.75
CHANCE_P = 0.1
CHANCE_PAIRS = 8
"""A piece is at chance once it has at least CHANCE_PAIRS pairs and P(pairwise accuracy >
CHANCE_LEVEL) < CHANCE_P: too unlikely to be a useful judge to be worth asking. A
statistical call, never a verdict from a few canaries: 4 of 8 pairs is at chance (P 0.05),
5 of 8 is not yet (P 0.17)."""


class Standing(str, Enum):
    INFORMATIVE = "informative"
    UNSETTLED = "unsettled"
    AT_CHANCE = "at_chance"


def standing(wins: float, pairs: int) -> Standing:
    """What a piece's pairwise record (`wins` of `pairs`, a tie counting ½) makes it."""
    if pairs and p_better(wins, pairs - wins) >= INFORMATIVE:
        return Standing.INFORMATIVE
    if pairs >= CHANCE_PAIRS and p_better(wins, pairs - wins, CHANCE_LEVEL) < CHANCE_P:
        return Standing.AT_CHANCE
    return Standing.UNSETTLED


class Reading(BaseModel):
    """What the evidence said of one canary: piece → value, higher meaning better."""

    canary: str
    """The canary's own id (`Canary.id`), which its partner's `pair` names."""
    pair: str | None
    kind: str
    values: dict[str, float]


def piece_values(cand: Candidate) -> dict[str, float]:
    """Every piece of evidence a judged candidate carries, as numbers (higher = better)."""
    out: dict[str, float] = {}
    scores: dict[str, list[float]] = defaultdict(list)
    checks: dict[str, list[float]] = defaultdict(list)
    for rv in cand.reviews:
        if rv.score is not None:
            scores[rv.model].append(rv.score)
        if rv.verdict is not None:
            probs = rv.pass_probs
            checks[rv.model].append(math.fsum(probs.values()) / len(probs) if probs else
                                    1.0 - len(rv.verdict.failed_fields) / 3)
    for model, values in scores.items():
        out[f"{REVIEWER}{model}: scores"] = math.fsum(values) / len(values)
    for model, values in checks.items():
        out[f"{REVIEWER}{model}: checks"] = math.fsum(values) / len(values)
    if cand.relevance is not None:
        out[RELEVANCE] = cand.relevance.cosine
    if cand.response and (sums := arithmetic.check(cand.response)) is not None:
        out[ARITHMETIC] = 0.0 if sums.wrong else 1.0
    if (lk := cand.likelihood) is not None:
        for name in SIGNALS:
            value = getattr(lk, name)
            if value is not None:
                out[f"{LIKELIHOOD}{name}"] = float(value)
    return out


def reading(cand: Candidate) -> Reading:
    assert cand.canary is not None
    return Reading(canary=cand.canary.id, pair=cand.canary.pair, kind=cand.canary.kind.value,
                   values=piece_values(cand))


def p_better(wins: float, losses: float, level: float = 0.5, steps: int = 2000) -> float:
    """P(p > level) for p ~ Beta(1 + wins, 1 + losses), by the midpoint rule on the
    log-density (wins and losses may be halves: a tie counts half each)."""
    a, b = 1.0 + wins, 1.0 + losses
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    h = 1.0 / steps
    above = total = 0.0
    for i in range(steps):
        x = (i + 0.5) * h
        d = math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x)) * h
        total += d
        if x > level:
            above += d
    return round(above / total, 6)


def discrimination(readings: list[Reading]) -> dict[str, Discrimination]:
    """Per piece of evidence, its pairwise accuracy on every complete pair, overall and per
    corruption kind; pieces in name order."""
    by_id = {r.canary: r for r in readings}
    tally: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for bad in readings:
        if bad.kind == "good" or bad.pair is None or bad.pair not in by_id:
            continue
        original = by_id[bad.pair]
        for piece in sorted(set(bad.values) & set(original.values)):
            hi, lo = original.values[piece], bad.values[piece]
            tally[piece][bad.kind].append(1.0 if hi > lo else 0.5 if hi == lo else 0.0)
    out = {}
    for piece in sorted(tally):
        kinds = tally[piece]
        every = [x for outcomes in kinds.values() for x in outcomes]
        wins = math.fsum(every)
        out[piece] = Discrimination(
            pairs=len(every), accuracy=round(wins / len(every), 4),
            p_better=p_better(wins, len(every) - wins),
            by_kind={k: KindDiscrimination(pairs=len(v), accuracy=round(math.fsum(v) / len(v), 4),
                                           p_better=p_better(math.fsum(v), len(v) - math.fsum(v)))
                     for k, v in sorted(kinds.items())},
            standing=standing(wins, len(every)).value)
    return out

"""Which evidence may decide, measured on the run's canary pairs (docs/method.md, "Which
evidence decides"). The decision (decision.py) reads an `Evidence`; the canary book makes
a new one after each judged canary.

Each piece of evidence has a standing from its pairwise record (discrimination.standing):
informative, unsettled or at chance. From the standings:

- **The LLM panel** decides by the paper's rule (τ/δ on its weighted scores, the
  adjudicator for the contested) only when one of its reviewers' pieces is informative;
  until then samples are not sent to it at all (its calls are saved and counted), while
  canaries still are, so that it can earn its place later in the run.
- **Each likelihood signal** (a check, for short), on each corruption kind it is
  informative on, may veto: a
  value below its threshold rejects. The threshold is where the share of that kind's
  corruptions below it most exceeds the share of originals below it (ties to the lower),
  lowered halfway to the next lower value seen. That point does not move when some
  originals are themselves bad answers of the kind (review mode: the originals are the
  data in doubt), since those add the same to both shares; and in review mode an original
  the signal puts below every corruption of the kind is taken as such a bad input, not as
  a good answer lost.
- **The relevance check** vetoes by its own threshold, set on the seeds (relevance.py).
- **The arithmetic check** (arithmetic.py) is a calculation, not a judgement: an equation
  the answer writes out that does not hold rejects from the start, with no threshold to
  set. Its canary pairs (changed numbers in an answer with equations) still measure it,
  and a run whose pairs rank originals below their corruptions more often than not sets
  it aside (`arithmetic_vetoes`). It never makes a sample accepted: an answer without an
  equation passes it without having been checked.
- A check is kept only when it pays on the canary pairs: the share of each kind's
  corruptions it catches that the relevance veto and the checks kept before it let
  through, averaged over the corruption kinds (bad answers taken as common as good ones
  and spread evenly over the kinds), must exceed the share of originals it rejects,
  counted by its upper credible bound (UPPER): 0 of 20 originals rejected may still be one
  good answer in ten. An original without the signal's value is one it cannot reject.
  Checks that catch the same answers do not add their false
  rejections up, and a signal that separates pairs but not values (mean log-prob on
  changed numbers: the change moves it less than answers differ from each other) rejects
  nothing.

Where the panel is not informative, a sample that every informative cheap piece passes is
accepted and its record says what was and was not checked; where no piece is informative
yet, the sample waits for more canaries and is kept as `unverified` if the run ends first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from gra_local.core.quality.discrimination import (
    ARITHMETIC,
    INFORMATIVE,
    LIKELIHOOD,
    RELEVANCE,
    REVIEWER,
    Reading,
    Standing,
    discrimination,
)
from gra_local.core.quality.relevance import vetoes as relevance_vetoes
from gra_local.core.rundir.calibration_report import Discrimination

DIGITS = 4
"""Values and thresholds are rounded to this many decimals before comparing."""
UPPER = 0.9
"""The credible level of the bound on the share of originals a check rejects."""


@dataclass(frozen=True)
class Check:
    """An informative likelihood signal as a veto."""

    piece: str
    threshold: float
    kinds: tuple[str, ...]
    """The corruption kind its threshold was set on (one it is informative on)."""
    typical: float | None = None
    """The median of the canaries' originals: where the margin (`Evidence.margin`) is 1."""

    def fails(self, value: float) -> bool:
        return round(value, DIGITS) < self.threshold

    def margin(self, value: float) -> float | None:
        """How far `value` is past the threshold, in units of the distance from the
        threshold to the typical original: 0 at the threshold (≥ 0 passes), 1 at the typical
        original, negative below; None without a typical original above the threshold."""
        if self.typical is None or self.typical - self.threshold <= 10 ** -DIGITS:
            return None
        return (round(value, DIGITS) - self.threshold) / (self.typical - self.threshold)


@dataclass(frozen=True)
class Evidence:
    """What the canaries judged so far allow to decide."""

    pieces: Mapping[str, Discrimination] = field(default_factory=dict)
    """Every piece's discrimination, standing and (for a check) threshold."""
    checks: tuple[Check, ...] = ()
    relevance_typical: float | None = None
    """The median relevance cosine of the canaries' originals (for the margin)."""

    @property
    def pairs(self) -> int:
        return max((d.pairs for d in self.pieces.values()), default=0)

    def _informative(self, name: str) -> bool:
        d = self.pieces.get(name)
        return d is not None and d.standing == Standing.INFORMATIVE.value

    @property
    def reviewers(self) -> dict[str, Discrimination]:
        return {k: d for k, d in self.pieces.items() if k.startswith(REVIEWER)}

    @property
    def panel_decides(self) -> bool:
        """One of the LLM reviewers' pieces is informative: the panel is asked and decides."""
        return any(d.standing == Standing.INFORMATIVE.value for d in self.reviewers.values())

    @property
    def arithmetic_vetoes(self) -> bool:
        """A wrong equation rejects, unless the canary pairs rank originals below their
        corruptions on it more often than not (see the module docstring)."""
        d = self.pieces.get(ARITHMETIC)
        return d is None or d.standing != Standing.AT_CHANCE.value and (d.accuracy or 0) >= 0.5

    @property
    def relevance_decides(self) -> bool:
        return self._informative(RELEVANCE)

    @property
    def cheap_decides(self) -> bool:
        """Some evidence that needs no generated judgement is informative."""
        return bool(self.checks) or self.relevance_decides

    def failing(self, values: Mapping[str, float]) -> tuple[Check, float] | None:
        """The first check a candidate's evidence fails, with the value it failed on."""
        for check in self.checks:
            value = values.get(check.piece)
            if value is not None and check.fails(value):
                return check, value
        return None

    def margin(self, values: Mapping[str, float],
               relevance_threshold: float | None = None) -> tuple[float, str] | None:
        """The decision score of the cheap evidence: the smallest margin (`Check.margin`)
        over the informative checks and, when informative, the relevance veto (at
        `relevance_threshold`), with the piece it is on. Every check passes exactly when
        it is ≥ 0, so the accept/reject decision is this score against 0 and the score
        ranks within each side: a rejected original sits just under 0, a swapped answer
        far under. None when no informative piece has a value and a typical original."""
        bounds = list(self.checks)
        if self.relevance_decides and relevance_threshold is not None:
            bounds.append(Check(RELEVANCE, round(relevance_threshold, DIGITS), (),
                                self.relevance_typical))
        margins = [(m, c.piece) for c in bounds if c.piece in values
                   and (m := c.margin(values[c.piece])) is not None]
        if not margins:
            return None
        low, piece = min(margins)
        return round(low, DIGITS), piece

    def passed(self, values: Mapping[str, float]) -> str:
        """What the informative cheap evidence found, for an accepted record's detail."""
        found = [f"{c.piece.removeprefix(LIKELIHOOD)} {values[c.piece]:.3f} ≥ {c.threshold}"
                 for c in self.checks if c.piece in values]
        if self.relevance_decides and RELEVANCE in values:
            found.append(f"relevance {values[RELEVANCE]:.3f}")
        return ", ".join(found) if found else "no informative piece had a value"

    def summary(self) -> str:
        """What decides samples now, in words."""
        if self.panel_decides:
            named = [k.removeprefix(REVIEWER) for k, d in self.reviewers.items()
                     if d.standing == Standing.INFORMATIVE.value]
            how = f"the panel by the paper's rule ({', '.join(named)} informative)"
        elif self.cheap_decides:
            how = "the cheap evidence; samples are not sent to the panel"
        else:
            how = "nothing yet: samples wait for more canaries (unverified if the run ends)"
        checks = [f"{c.piece} < {c.threshold} rejects" for c in self.checks]
        if self.relevance_decides:
            checks.append("relevance informative")
        tail = "" if self.panel_decides else f"; {self.panel_note()}"
        return how + (f"; {', '.join(checks)}" if checks else "") + tail

    def panel_note(self) -> str:
        """Why the panel did not decide, for a record's detail and the summary."""
        revs = self.reviewers
        if not revs:
            return "no reviewer judged a canary pair"
        best_name, best = max(revs.items(), key=lambda kv: (kv[1].p_better or 0.0, kv[0]))
        chance = all(d.standing == Standing.AT_CHANCE.value for d in revs.values())
        what = "no reviewer better than chance" if chance else "no reviewer shown better than chance yet"
        return (f"{what} on {self.pairs} canary pairs (best: {best_name.removeprefix(REVIEWER)} "
                f"{best.accuracy:.0%}, P(better) {best.p_better:.2f})")


def evidence_of(readings: list[Reading], relevance_threshold: float | None = None,
                trusted: bool = True) -> Evidence:
    """The standings and checks the canary readings so far support (`relevance_threshold`:
    the run's relevance veto, whose catches a likelihood check must add to; `trusted`:
    the originals are known good, the seeds of `run`, not the input of `review`)."""
    pieces = discrimination(readings)
    good = [r for r in readings if r.kind == "good"]
    bad = [r for r in readings if r.kind != "good" and r.pair is not None]
    candidates = [c for name, d in pieces.items() if name.startswith(LIKELIHOOD)
                  for kind in _kinds(d)
                  if (c := _candidate(name, kind, good, bad, trusted)) is not None]
    covered: set[str] = set()
    if relevance_threshold is not None and pieces.get(RELEVANCE) is not None \
            and pieces[RELEVANCE].standing == Standing.INFORMATIVE.value:
        covered = {r.canary for r in bad if RELEVANCE in r.values
                   and relevance_vetoes(r.values[RELEVANCE], relevance_threshold)}
    kept = _adding(candidates, bad, covered)
    out = dict(pieces)
    for check in reversed(kept):  # a signal's piece shows its first (most useful) threshold
        out[check.piece] = out[check.piece].model_copy(update={"threshold": check.threshold})
    return Evidence(out, tuple(kept), _median(good, RELEVANCE))


def _kinds(d: Discrimination) -> list[str]:
    """The corruption kinds a signal may veto: those it is informative on, and when it is
    informative overall, every kind it ranks right more often than not."""
    overall = d.standing == Standing.INFORMATIVE.value
    return [k for k, kd in d.by_kind.items() if (kd.accuracy or 0) > 0.5
            and (overall or (kd.p_better is not None and kd.p_better >= INFORMATIVE))]


@dataclass(frozen=True)
class _Candidate:
    """A possible check with the canaries it was set on."""

    check: Check
    corruptions: list[Reading]
    """The canaries of its kind that carry its signal."""
    originals: list[Reading]
    """The originals it is measured against: all of them, less in review mode those below
    every corruption (one without its value is one it cannot reject)."""

    def caught(self, rows: list[Reading]) -> set[str]:
        return {r.canary for r in rows if self.check.piece in r.values
                and self.check.fails(r.values[self.check.piece])}


def _candidate(piece: str, kind: str, good: list[Reading], bad: list[Reading],
               trusted: bool) -> _Candidate | None:
    corruptions = [r for r in bad if r.kind == kind and piece in r.values]
    if not corruptions:
        return None
    originals = list(good)
    if not trusted:  # an input pair below every corruption of the kind is one of them
        lowest = min(round(r.values[piece], DIGITS) for r in corruptions)
        originals = [r for r in originals
                     if piece not in r.values or round(r.values[piece], DIGITS) >= lowest]
    threshold = veto_threshold([r.values[piece] for r in originals if piece in r.values],
                               [r.values[piece] for r in corruptions])
    if threshold is None:
        return None
    return _Candidate(Check(piece, threshold, (kind,), _median(originals, piece)),
                      corruptions, originals)


def _median(rows: list[Reading], piece: str) -> float | None:
    values = [r.values[piece] for r in rows if piece in r.values]
    return round(statistics.median(values), DIGITS) if values else None


def _adding(candidates: list[_Candidate], bad: list[Reading], covered: set[str]) -> list[Check]:
    """The checks that pay, most useful first (see the module docstring). A check's gain is
    the mean over the K corruption kinds of the share of that kind's corruptions it catches
    that the relevance veto (`covered`) and the checks kept before it let through, less the
    upper bound of its share of originals rejected; kept while > 0."""
    by_kind: dict[str, list[Reading]] = {}
    for r in bad:
        by_kind.setdefault(r.kind, []).append(r)
    cost = {id(c): upper_share(len(c.caught(c.originals)), len(c.originals)) for c in candidates}

    def gain(c: _Candidate) -> float:
        caught = [len(c.caught(rows) - covered) / len(rows) for rows in by_kind.values()]
        return math.fsum(caught) / len(caught) - cost[id(c)]

    kept: list[Check] = []
    todo = list(candidates)
    while todo:
        gains = [gain(c) for c in todo]
        best = max(range(len(todo)), key=lambda i: (gains[i], -i))
        if gains[best] <= 0:
            break
        chosen = todo.pop(best)
        kept.append(chosen.check)
        covered |= chosen.caught(bad)
    return kept


@lru_cache(maxsize=1024)
def upper_share(hits: int, n: int, level: float = UPPER, steps: int = 2000) -> float:
    """The `level` quantile of Beta(1 + hits, 1 + n − hits): with `hits` of `n` seen, the
    share is below it with that probability (midpoint rule; 1.0 when n is 0)."""
    if n <= 0:
        return 1.0
    a, b = 1.0 + hits, 1.0 + n - hits
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    h = 1.0 / steps
    cum = 0.0
    for i in range(steps):
        x = (i + 0.5) * h
        cum += math.exp(log_norm + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x)) * h
        if cum >= level:
            return round(x, DIGITS)
    return 1.0


def veto_threshold(good: list[float], bad: list[float]) -> float | None:
    """Where a veto rejects (<): the value at which the share of `bad` values below it most
    exceeds the share of `good` ones below it, ties to the lower, then lowered halfway to
    the next lower value seen; None without both, or when no value does better than none."""
    if not good or not bad:
        return None
    g = [round(x, DIGITS) for x in good]
    b = [round(x, DIGITS) for x in bad]
    values = sorted({*g, *b})
    best, lead = None, 0.0
    for t in values:  # ascending: a tie keeps the lower one
        below = sum(x < t for x in b) / len(b) - sum(x < t for x in g) / len(g)
        if below > lead + 1e-12:
            best, lead = t, below
    if best is None:
        return None
    lower = [v for v in values if v < best]
    return round((best + lower[-1]) / 2, DIGITS)

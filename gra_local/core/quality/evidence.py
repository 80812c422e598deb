"""Which evidence may decide, measured on the run's canary pairs (docs/method.md, "Which
evidence decides"). The decision (decision.py) reads an `Evidence`; the canary book makes
a new one after each judged canary.

Each piece of evidence has a standing from its pairwise record (discrimination.standing):
informative, unsettled or at chance. From the standings:

- **The LLM panel** decides by the paper's rule (τ/δ on its weighted scores, the
  adjudicator for the contested) only when one of its reviewers' pieces is informative;
  until then samples are not sent to it at all (its calls are saved and counted), while
  canaries still are, so that it can earn its place later in the run.
- **Each likelihood signal** that is informative, overall or on one corruption kind,
  vetoes: a value below its threshold rejects. The threshold is set on the canaries: of
  the values that keep the originals (all but ORIGINALS_LOST of them), the one that
  rejects most of the corruptions it is informative on, then lowered halfway to the next
  lower value seen, so that the lowest original kept is not the edge itself.
- **The relevance check** vetoes by its own threshold, set on the seeds (relevance.py).
- A likelihood check is kept only when, on the canary pairs, it rejects more corruptions
  that the relevance veto and the checks kept before it let through than originals it
  rejects: signals that catch the same answers do not add their false rejections up.

Where the panel is not informative, a sample that every informative cheap piece passes is
accepted and its record says what was and was not checked; where no piece is informative
yet, the sample waits for more canaries and is kept as `unverified` if the run ends first.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from gra_local.core.quality.discrimination import (
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
ORIGINALS_LOST = 0.1
"""Share of the canaries' originals a likelihood check may reject at most (rounded down:
none under ten originals). A veto is for what the originals never look like: a signal that
ranks pairs well but overlaps the originals (a human answer can be unlikely to a small
model) rejects nothing it cannot tell apart."""


@dataclass(frozen=True)
class Check:
    """An informative likelihood signal as a veto."""

    piece: str
    threshold: float
    kinds: tuple[str, ...]
    """The corruption kinds its threshold was set on (those it is informative on)."""
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


def evidence_of(readings: list[Reading], relevance_threshold: float | None = None) -> Evidence:
    """The standings and checks the canary readings so far support (`relevance_threshold`:
    the run's relevance veto, whose catches a likelihood check must add to)."""
    pieces = discrimination(readings)
    good = [r for r in readings if r.kind == "good"]
    bad = [r for r in readings if r.kind != "good" and r.pair is not None]
    checks = []
    out = {}
    for name, d in pieces.items():
        kinds = tuple(k for k, kd in d.by_kind.items()
                      if kd.p_better is not None and kd.p_better >= INFORMATIVE and (kd.accuracy or 0) > 0.5)
        if name.startswith(LIKELIHOOD) and (kinds or d.standing == Standing.INFORMATIVE.value):
            kinds = kinds or tuple(d.by_kind)
            threshold = veto_threshold([r.values[name] for r in good if name in r.values],
                                       [r.values[name] for r in bad if r.kind in kinds and name in r.values])
            if threshold is not None:
                checks.append(Check(name, threshold, kinds, _median(good, name)))
        out[name] = d
    covered: set[str] = set()
    if relevance_threshold is not None and out.get(RELEVANCE) is not None \
            and out[RELEVANCE].standing == Standing.INFORMATIVE.value:
        covered = {r.canary for r in bad if RELEVANCE in r.values
                   and relevance_vetoes(r.values[RELEVANCE], relevance_threshold)}
    checks.sort(key=lambda c: -(out[c.piece].p_better or 0.0))  # ties: the surer piece first
    kept = _adding(checks, good, bad, covered)
    for check in kept:
        out[check.piece] = out[check.piece].model_copy(update={"threshold": check.threshold})
    return Evidence(out, tuple(kept), _median(good, RELEVANCE))


def _median(rows: list[Reading], piece: str) -> float | None:
    values = [r.values[piece] for r in rows if piece in r.values]
    return round(statistics.median(values), DIGITS) if values else None


def _caught(check: Check, rows: list[Reading]) -> set[str]:
    return {r.canary for r in rows if check.piece in r.values and check.fails(r.values[check.piece])}


def _adding(checks: list[Check], good: list[Reading], bad: list[Reading],
            covered: set[str]) -> list[Check]:
    """The checks worth their cost, most useful first: on the canary pairs, each kept one
    rejects more corruptions that the relevance veto and the checks kept before it let
    through than originals it rejects. Two signals that catch the same answers (mean
    log-prob and PMI on a swap) do not both veto, so their false rejections do not add up."""
    kept: list[Check] = []
    todo = list(checks)
    while todo:
        gains = [len(_caught(c, bad) - covered) - len(_caught(c, good)) for c in todo]
        best = max(range(len(todo)), key=lambda i: (gains[i], -i))
        if gains[best] <= 0:
            break
        check = todo.pop(best)
        kept.append(check)
        covered |= _caught(check, bad)
    return kept


def veto_threshold(good: list[float], bad: list[float]) -> float | None:
    """Where a veto rejects: of the thresholds that keep all but ORIGINALS_LOST of the
    `good` values (kept: ≥), the one that vetoes most `bad` ones (<), ties to the lower,
    then lowered halfway to the next lower value seen; None without both, or when it would
    veto no `bad` value."""
    if not good or not bad:
        return None
    values = sorted({round(x, DIGITS) for x in [*good, *bad]})
    g = [round(x, DIGITS) for x in good]
    b = [round(x, DIGITS) for x in bad]
    allowed = int(ORIGINALS_LOST * len(g))
    best, caught = values[0], 0
    for t in values:  # ascending: a tie keeps the lower one
        if sum(x < t for x in g) > allowed:
            break
        if (n := sum(x < t for x in b)) > caught:
            best, caught = t, n
    if not caught:
        return None
    below = [v for v in values if v < best]
    return round((best + below[-1]) / 2, DIGITS)

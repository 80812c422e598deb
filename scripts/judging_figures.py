"""The figures of scripts/bench_judging.py: what it reads of records, and balanced accuracy,
AUC per signal and per kind of bad answer, computed against the labeled set.

Every figure of a judge that says good or bad is over the same pairs: all of the set's.
The decision's `unverified` pairs (nothing was shown informative to judge them) count as
not right: neither a good pair judged good nor a bad one judged bad. In the decision's AUC
per kind (one threshold: the mean of the share of good pairs accepted and the share of
that kind's pairs rejected) an unverified pair counts half, as a tie.

A single judge (a panel slot, the relevance check) is scored over the pairs it judged,
and its "judged" count says how many. It competes for `best_single`, hence `panel_gain`,
only when it judged every pair the decision did: a slot the panel never asked (a veto
before it, the relevance check, routing, samples decided by cheap evidence) is left out
rather than charged with pairs it never saw, and never given a figure over easier or
harder pairs than the decision's. So panel_gain compares like with like and is never
flattered by counting unasked pairs against a single judge."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import benchlib
from make_judging_set import KINDS, Item
from pydantic import BaseModel, ConfigDict, field_validator

RELEVANCE = "relevance"
LIKELIHOOD_SIGNALS = ("mean_logprob", "pmi", "end_logprob", "low_tail")
_LINE = re.compile(r" line (\d+)$")


class Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reasonable: Literal["pass", "fail"]
    complete: Literal["pass", "fail"]
    clear: Literal["pass", "fail"]

    @property
    def passed(self) -> bool:
        return self.reasonable == self.complete == self.clear == "pass"


class ReviewView(BaseModel):
    """What this bench reads of a record's review slot (other fields ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    verdict: Verdict | None = None
    score: float | None = None
    sampled_score: float | None = None
    pass_probs: dict[str, float] | None = None


class RelevanceView(BaseModel):
    """The relevance check's figures in a record: its cosine and the run's threshold."""
    model_config = ConfigDict(extra="ignore")
    cosine: float
    threshold: float | None = None


class LikelihoodView(BaseModel):
    """The likelihood signals in a record (core.quality.likelihood)."""
    model_config = ConfigDict(extra="ignore")
    mean_logprob: float
    pmi: float
    end_logprob: float | None = None
    low_tail: float


class ArithmeticView(BaseModel):
    """The arithmetic check in a record (core.quality.arithmetic)."""
    model_config = ConfigDict(extra="ignore")
    equations: int
    wrong: list[str] = []


class RecordView(BaseModel):
    """What this bench reads of a record (the record contract; `relevance` when the run
    had the relevance reviewer: {cosine, threshold}, or a bare cosine)."""

    model_config = ConfigDict(extra="ignore")
    id: str
    source: str | None = None
    decision: Literal["accepted", "rejected", "unverified"]
    reason: str
    reviews: list[ReviewView] = []
    relevance: RelevanceView | None = None
    likelihood: LikelihoodView | None = None
    arithmetic: ArithmeticView | None = None
    mean: float | None = None
    margin: float | None = None

    @field_validator("relevance", mode="before")
    @classmethod
    def _bare_cosine(cls, value: object) -> object:
        return {"cosine": value} if isinstance(value, int | float) else value

    @property
    def relevance_says_good(self) -> bool | None:
        """Cosine at or above the record's threshold; without one, not vetoed off_topic."""
        if self.relevance is None:
            return None
        if self.relevance.threshold is None:
            return self.reason != "off_topic"
        return self.relevance.cosine >= self.relevance.threshold

    @property
    def line(self) -> int | None:
        m = _LINE.search(self.source or "")
        return int(m.group(1)) if m else None

    @property
    def says_good(self) -> bool | None:
        """The decision: good when accepted (a `duplicate` too: judged good, then its
        higher-μ twin kept), bad when rejected, None when unverified."""
        if self.decision == "unverified":
            return None
        return self.decision == "accepted" or self.reason == "duplicate"


def decision_score(r: RecordView, tau: float) -> float:
    """The decision as a score that ranks within each side: the cheap evidence's margin
    where it decided (≥ 0 accepted), the panel's μ − τ where the panel did, and for a
    record with neither (a stage's failure, unverified) +inf accepted, −inf rejected, 0
    unverified (a tie at the line)."""
    if r.margin is not None:
        return r.margin
    if r.mean is not None and r.reason in ("accepted", "low_score", "adjudicated_accept",
                                           "adjudicated_reject", "duplicate"):
        return r.mean - tau
    said = r.says_good
    return 0.0 if said is None else math.inf if said else -math.inf


@dataclass
class Score:
    """One judge's figures over the pairs it judged (`unverified` of them: no call, not
    right)."""

    judge: str
    judged: int = 0
    good_right: int = 0
    good_n: int = 0
    bad_right: int = 0
    bad_n: int = 0
    unverified: int = 0

    @property
    def balanced_accuracy(self) -> float:
        """Mean of the two recalls, in %; NaN unless it judged pairs of both labels."""
        if not self.good_n or not self.bad_n:
            return math.nan
        return 50 * (self.good_right / self.good_n + self.bad_right / self.bad_n)


def score(judge: str, calls: Iterable[tuple[bool, bool | None]]) -> Score:
    """`calls`: (is good, said good) per pair; said None (unverified) is not right."""
    s = Score(judge)
    for truth, said in calls:
        s.judged += 1
        s.unverified += said is None
        if truth:
            s.good_n += 1
            s.good_right += said is True
        else:
            s.bad_n += 1
            s.bad_right += said is False
    return s


def reviewer_says(review: ReviewView, tau: float) -> bool | None:
    """Good, bad, or None when this slot never judged the pair."""
    if review.verdict is None:
        return None
    if not review.verdict.passed:
        return False
    return None if review.score is None else review.score >= tau


def slot_names(reviews: Sequence[ReviewView]) -> list[str]:
    """A reviewer per slot: the model, then model#2, #3 for its further slots in the record."""
    seen: dict[str, int] = {}
    names = []
    for r in reviews:
        seen[r.model] = seen.get(r.model, 0) + 1
        names.append(r.model if seen[r.model] == 1 else f"{r.model}#{seen[r.model]}")
    return names


def auc(pairs: Sequence[tuple[bool, float]]) -> float:
    """P(a good pair's value > a bad one's), ties half (Mann–Whitney); NaN without both."""
    good = [v for t, v in pairs if t]
    bad = [v for t, v in pairs if not t]
    if not good or not bad:
        return math.nan
    wins = sum((g > b) + 0.5 * (g == b) for g in good for b in bad)
    return wins / (len(good) * len(bad))


@dataclass
class KindTally:
    """The decision on one kind's pairs."""

    pairs: int = 0
    accepted: int = 0
    """Judged good (a `duplicate` too)."""
    unverified: int = 0

    @property
    def rejected(self) -> int:
        return self.pairs - self.accepted - self.unverified

    def right(self, good: bool) -> int:
        """Pairs the decision judged correctly: accepted if good, rejected if bad."""
        return self.accepted if good else self.rejected


def decision_auc(good: KindTally, bad: KindTally) -> float:
    """The binary decision's AUC of good pairs against bad ones: the mean of the share of
    good pairs accepted and of bad pairs rejected, an unverified pair counting half (a
    tie); NaN without both."""
    if not good.pairs or not bad.pairs:
        return math.nan
    return (0.5 * (good.accepted + 0.5 * good.unverified) / good.pairs
            + 0.5 * (bad.rejected + 0.5 * bad.unverified) / bad.pairs)


@dataclass
class Figures:
    decision: Score
    """Over every pair: its unverified ones count as not right."""
    reviewers: list[Score]
    relevance: Score | None
    relevance_auc: float
    kinds: dict[str, KindTally]
    reasons: dict[str, int]
    score_auc: dict[str, float]
    """Per kind of bad answer: the AUC of `decision_score` against the good pairs."""
    signal_auc: dict[str, tuple[float, int]]
    """AUC of each raw signal the panel had, averaged over a pair's reviewers: "expected
    score" (probability-weighted), "sampled score", "P(pass)"; with the pairs it covers."""

    @property
    def pairs(self) -> int:
        return self.decision.judged

    def same_pairs(self, s: Score) -> bool:
        """Whether a single judge judged every pair the decision did."""
        return s.judged == self.pairs

    @property
    def best_single(self) -> Score | None:
        """The best single judge over the decision's pairs (see the module docstring)."""
        singles = [s for s in [*self.reviewers, self.relevance]
                   if s is not None and self.same_pairs(s) and not math.isnan(s.balanced_accuracy)]
        return max(singles, key=lambda s: s.balanced_accuracy, default=None)

    @property
    def panel_gain(self) -> float:
        best = self.best_single
        return math.nan if best is None else self.decision.balanced_accuracy - best.balanced_accuracy

    @property
    def decision_auc(self) -> dict[str, float]:
        """Per kind of bad answer: the decision's AUC against the good pairs."""
        good = self.kinds.get("good", KindTally())
        return {k: decision_auc(good, t) for k, t in self.kinds.items() if k != "good"}


def figures(items: Sequence[Item], records: Sequence[RecordView], tau: float) -> Figures:
    """Everything above, for records matched to `items` by their source line (1-based;
    a record without one is left out)."""
    matched = [(items[r.line - 1], r) for r in records if r.line is not None]
    truth = [(item.label == "good", r) for item, r in matched]
    decision = score("decision", ((t, r.says_good) for t, r in truth))
    per: dict[str, list[tuple[bool, bool]]] = {}
    for t, r in truth:
        for name, review in zip(slot_names(r.reviews), r.reviews, strict=True):
            said = reviewer_says(review, tau)
            if said is not None:
                per.setdefault(name, []).append((t, said))
    reviewers = [score(name, calls) for name, calls in sorted(per.items())]
    rel = [(t, r.relevance.cosine, r.relevance_says_good) for t, r in truth if r.relevance is not None]
    relevance = score(f"{RELEVANCE} (veto)", ((t, bool(said)) for t, _, said in rel)) if rel else None
    kinds: dict[str, KindTally] = {}
    for item, r in matched:
        tally = kinds.setdefault(item.kind, KindTally())
        tally.pairs += 1
        tally.accepted += r.says_good is True
        tally.unverified += r.says_good is None
    scored = [(item.kind, decision_score(r, tau)) for item, r in matched]
    good = [(True, x) for k, x in scored if k == "good"]
    score_auc = {k: auc(good + [(False, x) for kk, x in scored if kk == k])
                 for k in KINDS if k != "good" and k in kinds}
    return Figures(decision, reviewers, relevance,
                   auc([(t, cosine) for t, cosine, _ in rel]),
                   {k: kinds[k] for k in KINDS if k in kinds},
                   benchlib.tally(r.reason for _, r in matched), score_auc, signal_aucs(truth))


def signal_aucs(truth: Sequence[tuple[bool, RecordView]]) -> dict[str, tuple[float, int]]:
    def mean(xs: list[float | None]) -> float | None:
        got = [x for x in xs if x is not None]
        return sum(got) / len(got) if got else None

    signals = {  # expected score only where it differs in kind from the sampled one
        "expected score": lambda r: mean([v.score for v in r.reviews if v.sampled_score is not None]),
        "sampled score": lambda r: mean([v.sampled_score for v in r.reviews]),
        "P(pass)": lambda r: mean([sum(v.pass_probs.values()) / 3 if v.pass_probs else None
                                   for v in r.reviews])}
    out = {}
    for name, of in signals.items():
        pairs = [(t, x) for t, r in truth if (x := of(r)) is not None]
        out[name] = (auc(pairs), len(pairs))
    return out


def evidence_of(r: RecordView) -> dict[str, float]:
    """Each piece of evidence of a record as a number, higher meaning better."""
    out: dict[str, float] = {}
    if r.relevance is not None:
        out["relevance cosine"] = r.relevance.cosine
    if r.likelihood is not None:
        for name in LIKELIHOOD_SIGNALS:
            value = getattr(r.likelihood, name)
            if value is not None:
                out[f"likelihood {name}"] = value
    if r.arithmetic is not None:
        out["arithmetic"] = 0.0 if r.arithmetic.wrong else 1.0
    scores = [v.score for v in r.reviews if v.score is not None]
    if scores:
        out["expected score"] = sum(scores) / len(scores)
    passes = [sum(v.pass_probs.values()) / 3 for v in r.reviews if v.pass_probs]
    if passes:
        out["P(pass)"] = sum(passes) / len(passes)
    return out


def kind_aucs(items: Sequence[Item], records: Sequence[RecordView]) -> dict[str, dict[str, tuple[float, int]]]:
    """Per piece of evidence, per kind of bad answer: the AUC of good pairs against that
    kind's pairs (and how many of that kind had a value), each piece alone."""
    values = [(items[r.line - 1], evidence_of(r)) for r in records if r.line is not None]
    pieces = sorted({p for _, v in values for p in v})
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for piece in pieces:
        good = [(True, v[piece]) for item, v in values if item.label == "good" and piece in v]
        row = {}
        for kind in KINDS:
            if kind == "good":
                continue
            bad = [(False, v[piece]) for item, v in values if item.kind == kind and piece in v]
            if bad:
                row[kind] = (auc(good + bad), len(bad))
        out[piece] = row
    return out

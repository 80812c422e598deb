"""Reviewer calibration inside a run: canary candidates ride along in review batches, their
judgements go to canaries.jsonl (never to the data), and the report in run.json is built
from them and from the real samples' reviews.

A canary is a Candidate with `canary` set: the review stages treat it like any sample
except that a failed instruction check does not stop the rest of its panel, and the batch
never decides, adjudicates or writes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from gra_local.core.candidate import Candidate
from gra_local.core.options import RunOptions
from gra_local.core.quality.calibration import (
    CalibrationReport,
    CanaryJudgement,
    PanelReview,
    calibrate,
)
from gra_local.core.quality.canaries import CanarySource, make_canaries
from gra_local.core.quality.decision import Calibration
from gra_local.core.quality.discrimination import Reading, Standing, reading, reviewer_piece
from gra_local.core.quality.evidence import Evidence, evidence_of
from gra_local.core.quality.relevance import CanaryScore, calibration_line
from gra_local.core.quality.weights import pairwise_weight
from gra_local.core.records import GivenPair
from gra_local.core.roles import RoleDraw
from gra_local.core.rundir import journal as j
from gra_local.core.rundir.calibration_report import Discrimination

FIRST_PAIRS = 4
"""Canary pairs in a run's first batch at least (judge `evidence`): four pairs that a piece
ranks right make P(better than chance) 0.97."""


READ_ONLY_PAIRS = 15
"""Pairs read only by the cheap evidence in a review's first batch: three of each of the
five corruption kinds (kinds take turns), and 3 of 3 pairs ranked right make a signal
informative on that kind (P 0.94)."""
READ_ONLY_FROM = 30
"""In `run`, a first batch of at least this many samples carries the READ_ONLY_PAIRS too
(two forward passes each, against the batch's generated answers): a 50-sample run makes
one batch of 100 attempts, which four judged pairs alone left to the relevance check
(measured: likelihood never informative, 50 of 50 accepted on relevance alone)."""


def canary_id(round_no: int, seq: int) -> str:
    return f"k{round_no}-{seq:06d}"


def judgements_of(cand: Candidate) -> list[CanaryJudgement]:
    """One judgement per panel slot's final reviewer, plus one failed judgement for every
    reviewer that gave invalid output and was replaced."""
    assert cand.canary is not None
    c = cand.canary
    out = [CanaryJudgement(reviewer=rv.model, canary_id=c.id, kind=c.kind,
                           expected_good=c.expected_good,
                           instruction_passed=None if rv.verdict is None else rv.verdict.passed,
                           score=rv.score, failed=rv.verdict is None and rv.score is None)
           for rv in cand.reviews]
    out += [CanaryJudgement(reviewer=name, canary_id=c.id, kind=c.kind,
                            expected_good=c.expected_good, instruction_passed=None, score=None,
                            failed=True)
            for name in cand.failed_reviewers]
    return out


def panel_of(record: dict) -> list[PanelReview]:
    """A decided record's reviews as calibration input (slots that never answered: None)."""
    out = []
    for rv in record.get("reviews") or []:
        verdict = rv.get("verdict")
        passed = None if verdict is None else all(v == "pass" for v in verdict.values())
        out.append((rv["model"], passed, rv.get("score")))
    return out


class CanaryBook:
    """The run's canaries: made per batch, judged, stored, summed up."""

    def __init__(self, out_dir: Path, opts: RunOptions, trusted: bool = True) -> None:
        self.path = out_dir / j.CANARIES
        self.opts = opts
        self.trusted = trusted
        """Whether the canaries' originals are known good (seeds in `run`); in `review` they
        are the input's own pairs, so reviewer weights come from pairs alone."""
        self.judgements: list[CanaryJudgement] = []
        self.panels: list[list[PanelReview]] = []
        self.decided: set[str] = set()
        self.readings: list[Reading] = []
        """What every piece of evidence said of each judged canary (discrimination.py)."""
        self.relevance: list[CanaryScore] = []
        """The relevance check's scores of canaries (it never vetoes one)."""
        self.made = 0  # canaries created so far (their ids are sequential)
        self._calibration = Calibration()
        self._out: j.JsonlAppender | None = None
        self._trust: CalibrationReport | None = None  # canary-based: what weights use
        self._evidence = Evidence()  # which evidence the pairs show informative
        self._full: CalibrationReport | None = None  # with every decided sample: run.json

    @property
    def enabled(self) -> bool:
        return self.opts.canaries > 0

    def load(self, decided_records: list[dict], journal: list[Candidate]) -> None:
        for row in j.read_jsonl(self.path):
            self.decided.add(row["id"])
            self.judgements += [CanaryJudgement.model_validate(x) for x in row["judgements"]]
            if "canary" in row:  # rows written before evidence was read from pairs have none
                self.readings.append(Reading(canary=row["canary"], pair=row.get("pair"),
                                             kind=row["kind"], values=row.get("evidence") or {}))
            if (rel := row.get("relevance")) is not None:
                self.relevance.append((bool(row["expected_good"]), float(rel["cosine"]),
                                       float(rel["threshold"])))
        self.made = len(self.decided | {c.id for c in journal if c.canary is not None})
        self.panels = [p for p in map(panel_of, decided_records) if p]
        self._out = j.JsonlAppender(self.path)
        self.refresh()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    def make(self, round_no: int, sources: list[CanarySource],
             draw_for: Callable[[str], RoleDraw], samples: int = 0) -> list[Candidate]:
        """A batch's canaries (for `samples` new samples), each with its own panel draw
        (never written as data)."""
        if not self.enabled or not sources:
            return []
        seed = self.opts.seed
        rng = random.Random(f"{seed}/canaries/{round_no}/{self.made}")
        out = []
        draws: dict[str, RoleDraw] = {}  # the two canaries of a pair share their panel
        set_aside = self.set_aside()
        fresh = 0
        made = [(c, False) for c in make_canaries(sources, rng, self.count())]
        made += [(c, True) for c in make_canaries(sources, rng, self.read_only_count(samples))]
        for canary, read_only in made:
            self.made += 1
            cid = canary_id(round_no, self.made)
            draw = draws.pop(canary.pair, None) if canary.pair else None
            if draw is None:
                draw = draw_for(cid)
                fresh += 1
                if read_only:  # the cheap evidence reads it; no reviewer is asked
                    draw = replace(draw, panel=[])
                elif fresh > 1 and set_aside:  # at chance: asked on one draw a batch, no more
                    draw = replace(draw, panel=[m for m in draw.panel if m not in set_aside])
                if canary.pair:
                    draws[canary.id] = draw
            cand = Candidate.new(round_no, 0, seed, canary.domain, [], draw)
            out.append(cand.model_copy(update={
                "id": cid,
                "seed": cand.call_seed("canary", self.made),
                "draft": GivenPair(instruction=canary.instruction),
                "response": canary.response, "canary": canary}))
        return out

    def set_aside(self) -> frozenset[str]:
        """Reviewer models the canary pairs show at chance on every piece (judge
        `evidence`): their canary calls thin out to one draw a batch, enough for later
        pairs to bring one back."""
        if self.opts.judge != "evidence":
            return frozenset()
        standings: dict[str, set[str | None]] = {}
        for piece, d in self._evidence.reviewers.items():
            if (named := reviewer_piece(piece)) is not None:
                standings.setdefault(named[0], set()).add(d.standing)
        return frozenset(m for m, s in standings.items() if s == {Standing.AT_CHANCE.value})

    def count(self) -> int:
        """Canaries for the next batch: --canaries, but at least FIRST_PAIRS pairs before the
        first is judged where the evidence must earn its say (two pairs never show a piece
        informative, so the first batch's samples would all wait)."""
        if self.opts.judge == "evidence" and not self.made:
            return max(self.opts.canaries, 2 * FIRST_PAIRS)
        return self.opts.canaries

    def read_only_count(self, samples: int = 0) -> int:
        """Canaries that only the cheap evidence reads (no reviewer asked), in the first
        batch with likelihood on (judge `evidence`): READ_ONLY_PAIRS pairs, so that a
        likelihood signal can be shown informative on one corruption kind before the first
        sample is decided. In `run` only for a first batch of READ_ONLY_FROM samples or
        more: the generator's answers are checked for an end by its own finish, so
        truncation matters less there, and a small run (the quickstart) stays short."""
        if self.opts.judge != "evidence" or not self.opts.likelihood or self.made:
            return 0
        if not self.trusted or samples >= READ_ONLY_FROM:
            return 2 * READ_ONLY_PAIRS
        return 0

    def judged(self, cand: Candidate) -> None:
        """Store a canary whose panel is done, with its relevance figures where the check
        ran; it never reaches the data files."""
        assert cand.canary is not None and self._out is not None
        found = judgements_of(cand)
        row = {"id": cand.id, "round": cand.round, "kind": cand.canary.kind,
               "expected_good": cand.canary.expected_good, "canary": cand.canary.id,
               "pair": cand.canary.pair,
               "judgements": [x.model_dump(mode="json") for x in found]}
        found_reading = reading(cand)
        row["evidence"] = found_reading.values
        self.readings.append(found_reading)
        if cand.likelihood is not None:
            row["likelihood"] = cand.likelihood.model_dump(mode="json")
        if (rel := cand.relevance) is not None:
            row["relevance"] = {"cosine": rel.cosine, "threshold": rel.threshold}
            self.relevance.append((cand.canary.expected_good, rel.cosine, rel.threshold))
        self._out.append(row)
        self.decided.add(cand.id)
        self.judgements += found
        self.refresh()

    def evidence(self) -> dict[str, Discrimination]:
        """Each piece of evidence's discrimination on the canary pairs judged so far, with
        its standing and, for a likelihood check, its threshold."""
        return dict(self._evidence.pieces)

    def _pairwise_weights(self) -> dict[str, float]:
        """Each reviewer's weight from how its scores rank canary pairs (weights.py)."""
        out = {}
        for piece, d in self._evidence.reviewers.items():
            named = reviewer_piece(piece)
            if named is not None and named[1] == "scores" and d.accuracy is not None:
                out[named[0]] = pairwise_weight(d.accuracy * d.pairs, d.pairs)
        return out

    def decided_by(self) -> str:
        """What decides samples now, in words (run.json, the summary)."""
        if not self.enabled:
            return "the panel, by the paper's rule (no canaries)"
        evidence = self._calibration.evidence
        if evidence is None:
            return "the panel, by the paper's rule" + ("" if self.made else " (no canary could be made)")
        return evidence.summary()

    def decided_record(self, record: dict) -> None:
        panel = panel_of(record)
        if panel:
            self.panels.append(panel)
            self._full = None

    def refresh(self) -> None:
        """After new canary judgements: the weights and flags change only with them."""
        self._trust = calibrate(self.judgements, [], self.opts.tau,
                                min_accuracy=self.opts.min_canary_accuracy)
        self._evidence = evidence_of(self.readings,
                                     self.relevance[-1][2] if self.relevance else None,
                                     trusted=self.trusted)
        self._full = None
        self._calibration = self._make_calibration()

    @property
    def report(self) -> CalibrationReport:
        """Everything, agreement on real samples included; built when asked (run.json),
        not per decision."""
        if self._full is None:
            full = calibrate(self.judgements, self.panels, self.opts.tau,
                             min_accuracy=self.opts.min_canary_accuracy)
            self._full = full.model_copy(update={"relevance": calibration_line(self.relevance)})
        return self._full

    def calibration(self) -> Calibration:
        """What the canaries judged so far say, for the decision (made once per judged
        canary, not per decision)."""
        return self._calibration

    def _make_calibration(self) -> Calibration:
        if not self.enabled or self._trust is None:
            return Calibration()
        action = self.opts.calibration
        # Without a canary (seeds with no responses) nothing can be measured: the paper's rule.
        evidence = self._evidence if self.opts.judge == "evidence" and self.made else None
        if action == "weight":
            weights = self._trust.weights() if self.trusted else self._pairwise_weights()
            return Calibration(action, weights=weights, evidence=evidence)
        if action == "drop":
            return Calibration(action, flagged=frozenset(self._trust.flagged()), evidence=evidence)
        return Calibration(action, evidence=evidence)

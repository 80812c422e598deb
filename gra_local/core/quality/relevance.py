"""The relevance reviewer: a deterministic panel member that vetoes, before any review
call, an answer whose embedding is too far from its instruction's (reason `off_topic`).

The threshold is never a constant: it is calibrated once per run on the run's own pairs
(seeds with responses in `run`, the input's pairs in `review`), good pairs against the same
instructions each given another pair's answer (a swap, as the `swapped` canaries make),
and kept in run.json so that a resume uses the same one.

The rule (`choose_threshold`): a pair is vetoed when its cosine, rounded to 4 decimals, is
below the threshold (equal passes). Every distinct rounded score is a candidate threshold;
the one with the highest balanced accuracy (mean of the share of good pairs passed and of
swapped pairs vetoed) wins, ties going to the lower threshold (fewer vetoes). All scores
equal: that score, which vetoes nothing. Fewer than MIN_GOOD good pairs (or no swapped
pair): no threshold, the check is off for the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gra_local.core.rundir.calibration_report import ReviewerCalibration

if TYPE_CHECKING:
    from gra_local.core.quality.canaries import CanarySource
    from gra_local.core.quality.embed_cache import Embedder, EmbeddingCache

MIN_GOOD = 4
"""Good pairs needed to calibrate; fewer turn the check off for the run."""
DIGITS = 4
"""Cosines and thresholds are rounded to this many decimals before comparing."""
NAME = "relevance"


@dataclass(frozen=True)
class Threshold:
    value: float
    balanced_accuracy: float
    good: int
    bad: int


def vetoes(cosine: float, threshold: float) -> bool:
    """The veto: cosine below the threshold, both rounded to DIGITS (equal passes)."""
    return round(cosine, DIGITS) < round(threshold, DIGITS)


def choose_threshold(good: list[float], bad: list[float]) -> Threshold | None:
    """The threshold that best separates `good` scores from `bad` ones (see the module
    docstring); None with fewer than MIN_GOOD good scores or no bad one."""
    if len(good) < MIN_GOOD or not bad:
        return None
    g = [round(x, DIGITS) for x in good]
    b = [round(x, DIGITS) for x in bad]
    best: Threshold | None = None
    for t in sorted(set(g) | set(b)):  # ascending: a tie keeps the lower one
        passed = sum(x >= t for x in g) / len(g)
        vetoed = sum(x < t for x in b) / len(b)
        acc = (passed + vetoed) / 2
        if best is None or acc > best.balanced_accuracy:
            best = Threshold(t, acc, len(g), len(b))
    return best


def swapped_pairs(sources: list[CanarySource]) -> list[tuple[str, str]]:
    """Each source's instruction with the next source's answer (in the given order, the
    last taking the first's), skipping a partner with the same instruction or answer."""
    out = []
    n = len(sources)
    for i, s in enumerate(sources):
        for k in range(1, n):
            t = sources[(i + k) % n]
            if t.instruction.strip() != s.instruction.strip() and \
                    t.response.strip() != s.response.strip():
                out.append((s.instruction, t.response))
                break
    return out


class Relevance:
    """The check for one run: cosines from the shared embedding cache, the threshold,
    set once the run has calibrated it (or read it back)."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None, cache_dir: Path) -> None:
        from gra_local.core.quality.embed_cache import EmbeddingCache

        self.embedder = embedder
        self.cache = cache if cache is not None else EmbeddingCache(cache_dir, embedder)
        self.threshold: float | None = None

    def cosines(self, pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        from gra_local.core.quality.dedup_gate import one_blas_thread

        with one_blas_thread():
            vi = self.cache.vectors([i for i, _ in pairs]).astype(np.float64)
            vr = self.cache.vectors([r for _, r in pairs]).astype(np.float64)
        norms = np.linalg.norm(vi, axis=1) * np.linalg.norm(vr, axis=1)
        dots = np.einsum("ij,ij->i", vi, vr)
        return [round(float(d / n), DIGITS) if n > 0 else 0.0 for d, n in zip(dots, norms, strict=True)]

    def calibrate(self, sources: list[CanarySource]) -> Threshold | None:
        usable = [s for s in sources if s.instruction.strip() and s.response.strip()]
        good = self.cosines([(s.instruction, s.response) for s in usable])
        bad = self.cosines(swapped_pairs(usable))
        return choose_threshold(good, bad)


CanaryScore = tuple[bool, float, float]
"""(expected good, cosine, threshold) of one canary the check scored."""


def calibration_line(scored: list[CanaryScore]) -> ReviewerCalibration | None:
    """The check as a reviewer in run.json's calibration: a judgement is right when a good
    canary passes and a corrupted one would be vetoed. None when it scored no canary."""
    if not scored:
        return None
    right = sum(vetoes(cos, thr) != good for good, cos, thr in scored)
    goods = [cos for good, cos, _ in scored if good]
    bads = [cos for good, cos, _ in scored if not good]
    return ReviewerCalibration(
        model=NAME, canaries=len(scored), correct=right, accuracy=right / len(scored),
        calls=len(scored), parse_failure_rate=0.0,
        mean_canary_good_score=sum(goods) / len(goods) if goods else None,
        mean_canary_bad_score=sum(bads) / len(bads) if bads else None)

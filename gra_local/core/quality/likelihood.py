"""Likelihood evidence: what a small model reads in a response without writing a word.

One teacher-forced pass per pair (`core.backend.Scorer.score_many`): the response's tokens
under the instruction's chat, and under the same chat with an empty instruction. From the
log-probs (measured on SmolLM2-135M, docs/method.md "Likelihood evidence"):

- `mean_logprob`, mean log p(response | instruction): separates good answers from bad;
- `pmi`, mean log p(response | instruction) − mean log p(response | empty instruction),
  = −log IFD (Superfiltering, Li et al. 2024; domain-conditional PMI, Holtzman et al. 2021):
  an answer the instruction does not explain (swapped, off-domain) scores ≤ 0;
- `end_logprob`, log p(end of turn | chat + response): an answer cut mid-way is unlikely to
  end there;
- `low_tail`, the 5th-percentile token log-prob: a few very unlikely tokens.

These are evidence, never a decision: how much each one counts is measured per run on
the canaries (core.quality.decision reads it).
"""

from __future__ import annotations

import math

from gra_local.core.backend import ScoreRequest, ScoreResult
from gra_local.core.records import LikelihoodScore

LOW_TAIL = 0.05
"""The quantile of token log-probs reported as `low_tail`."""
SIGNALS = ("mean_logprob", "pmi", "end_logprob", "low_tail")
"""The signals a LikelihoodScore carries, each higher for a better answer."""


def request(messages: list[dict[str, str]], response: str) -> ScoreRequest:
    """Score `response` as the answer to the chat `messages` (whose last turn is the user's
    instruction), against the same chat with that turn emptied."""
    baseline = [*messages[:-1], {**messages[-1], "content": ""}]
    return ScoreRequest(messages=messages, baseline=baseline, response=response)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def shortfall(result: ScoreResult) -> str | None:
    """Why a reading is missing or partial, in words (run.json counts them); None: whole."""
    if result.finish_reason == "empty":
        return "empty answer: nothing to read"
    if result.finish_reason == "error":
        return "no reply from the scoring model"
    if result.finish_reason != "ok" or not result.logprobs:
        return "nothing scored (the prompt fills the context)"
    if result.truncated:
        return "longer than the context: read on what fits, no end-of-turn log-prob"
    if result.end_logprob is None:
        return "no end-of-turn token in the chat template: no end-of-turn log-prob"
    return None


def signals(model: str, result: ScoreResult) -> LikelihoodScore | None:
    """The signals of one scored response; None when nothing was scored."""
    if result.finish_reason != "ok" or not result.logprobs:
        return None
    n = len(result.logprobs)
    mean = math.fsum(result.logprobs) / n
    base = math.fsum(result.baseline_logprobs) / len(result.baseline_logprobs) \
        if result.baseline_logprobs else mean
    return LikelihoodScore(
        model=model, tokens=n, mean_logprob=round(mean, 6), pmi=round(mean - base, 6),
        end_logprob=None if result.end_logprob is None else round(result.end_logprob, 6),
        low_tail=round(quantile(result.logprobs, LOW_TAIL), 6), truncated=result.truncated)

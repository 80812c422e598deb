"""Likelihood signals from a scored response: mean log-prob, PMI (= −log IFD), end of turn,
the low tail; the baseline chat empties only the instruction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gra_local.core.backend import ScoreResult
from gra_local.core.quality.likelihood import quantile, request, signals


def test_the_baseline_empties_only_the_instruction() -> None:
    chat = [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Add 2 and 2."}]
    req = request(chat, "4")
    assert req.messages == chat and req.response == "4"
    assert req.baseline == [chat[0], {"role": "user", "content": ""}]


def test_pmi_is_minus_log_ifd() -> None:
    cond, base = [-1.0, -2.0, -0.5, -4.5], [-3.0, -2.5, -2.0, -4.5]
    got = signals("m", ScoreResult(finish_reason="ok", logprobs=cond, baseline_logprobs=base,
                                   end_logprob=-0.25, response_tokens=4))
    assert got is not None
    assert got.mean_logprob == -2.0 and got.pmi == pytest.approx(1.0)
    # IFD = PPL(response | instruction) / PPL(response) = exp(-mean cond) / exp(-mean base)
    ifd = math.exp(-np.mean(cond)) / math.exp(-np.mean(base))
    assert got.pmi == pytest.approx(-math.log(ifd))
    assert got.end_logprob == -0.25 and got.tokens == 4 and not got.truncated


def test_low_tail_is_the_5th_percentile() -> None:
    values = [float(-i) for i in range(1, 101)]
    assert quantile(values, 0.05) == pytest.approx(float(np.quantile(values, 0.05)))
    assert quantile([-1.0], 0.05) == -1.0
    got = signals("m", ScoreResult(finish_reason="ok", logprobs=values, baseline_logprobs=values))
    assert got is not None and got.low_tail == pytest.approx(float(np.quantile(values, 0.05)))


@pytest.mark.parametrize("result", [
    ScoreResult(finish_reason="empty"),
    ScoreResult(finish_reason="error"),
    ScoreResult(finish_reason="ok", logprobs=[]),
])
def test_nothing_scored_gives_no_signals(result: ScoreResult) -> None:
    assert signals("m", result) is None


def test_a_truncated_pair_says_so_and_has_no_end() -> None:
    got = signals("m", ScoreResult(finish_reason="ok", logprobs=[-1.0], baseline_logprobs=[-1.0],
                                   truncated=True, response_tokens=9000))
    assert got is not None and got.truncated and got.end_logprob is None and got.pmi == 0.0


def test_shortfall_says_why_a_reading_is_missing_or_partial() -> None:
    from gra_local.core.backend import ScoreResult
    from gra_local.core.quality.likelihood import shortfall

    whole = ScoreResult(finish_reason="ok", logprobs=[-1.0], baseline_logprobs=[-2.0],
                        end_logprob=-0.1, response_tokens=1)
    assert shortfall(whole) is None
    assert shortfall(ScoreResult(finish_reason="empty")) == "empty answer: nothing to read"
    assert "no reply" in (shortfall(ScoreResult(finish_reason="error")) or "")
    cut = whole.model_copy(update={"truncated": True, "end_logprob": None})
    assert "longer than the context" in (shortfall(cut) or "")
    no_end = whole.model_copy(update={"end_logprob": None})
    assert "no end-of-turn token in the chat template" in (shortfall(no_end) or "")

"""The ETA is a pure function of measured speeds and the run's options."""

from __future__ import annotations

import pytest

from gra_local.core.engine.eta import Speed, predict_seconds

FAST = Speed(prompt_tokens_per_s=1000, decode_tokens_per_s=100, load_seconds=0.2)
SLOW = Speed(prompt_tokens_per_s=100, decode_tokens_per_s=10, load_seconds=2.0)


def test_more_samples_and_slower_models_take_longer() -> None:
    base = predict_seconds({"a": FAST}, samples=10, max_attempts=40, rounds=1, panel=3, seed_pool=16)
    assert predict_seconds({"a": FAST}, 20, 80, 1, 3, 16) > base
    assert predict_seconds({"a": SLOW}, 10, 40, 1, 3, 16) > 5 * base
    assert predict_seconds({"a": FAST}, 10, 40, 2, 3, 16) > 1.8 * base


def test_attempt_cap_bounds_the_estimate() -> None:
    capped = predict_seconds({"a": FAST}, 100, 10, 1, 3, 0, acceptance=0.01)
    assert capped == predict_seconds({"a": FAST}, 100, 10, 1, 3, 0, acceptance=0.001)


def test_no_speeds_is_an_error() -> None:
    with pytest.raises(ValueError):
        predict_seconds({}, 1, 4, 1, 3, 8)

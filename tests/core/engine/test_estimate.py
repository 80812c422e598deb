"""The run's ETA from the speeds its models were measured at as they loaded
(core.engine.estimate), alone and through a scripted run."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeBackend, FakeSession
from test_scheduler import request

from gra_local.core.config import ModelSpec
from gra_local.core.engine.estimate import Estimator
from gra_local.core.engine.eta import Speed, predict_seconds
from gra_local.core.engine.scheduler import Run
from gra_local.core.events import Estimate, ModelLoaded, Notice


def loaded(name: str, decode: float | None = 50.0, error: str | None = None) -> ModelLoaded:
    return ModelLoaded(name, 0.5, 0, prompt_tokens_per_s=None if decode is None else 400.0,
                       decode_tokens_per_s=decode, speed_error=error)


def test_each_new_speed_gives_a_prediction_from_the_speeds_known(tmp_path: Path) -> None:
    req = request(tmp_path / "out", ["a", "b"], samples=4)
    seen: list = []
    sink = Estimator(req, seen.append)
    sink(loaded("a", 50.0))
    opts = req.options
    one = predict_seconds({"a": Speed(400.0, 50.0, 0.5)}, opts.samples, opts.attempt_cap,
                          opts.rounds, opts.panel, opts.seed_pool)
    assert isinstance(seen[1], Estimate) and seen[1].predicted_seconds == pytest.approx(one, abs=0.1)
    assert req.predicted_seconds == seen[1].predicted_seconds and "as a loaded" in seen[1].note
    sink(loaded("a", 50.0))  # loaded again (after an unload): nothing new
    sink(loaded("b", 10.0))  # a slower model: the mean speed drops, the run takes longer
    estimates = [e for e in seen if isinstance(e, Estimate)]
    assert len(estimates) == 2 and estimates[1].predicted_seconds > estimates[0].predicted_seconds
    assert "as a, b loaded" in estimates[1].note


def test_a_failed_probe_says_the_eta_is_unknown_and_a_benched_run_keeps_its_own(tmp_path: Path) -> None:
    seen: list = []
    sink = Estimator(request(tmp_path / "out", ["a"]), seen.append)
    sink(loaded("a", None, error="the speed probe failed: no reply"))
    assert seen[1] == Notice("ETA unknown for a: the speed probe failed: no reply")
    benched = request(tmp_path / "out2", ["a"])
    benched.predicted_seconds = 60.0
    seen.clear()
    Estimator(benched, seen.append)(loaded("a"))
    assert len(seen) == 1 and benched.predicted_seconds == 60.0  # from `models bench`: kept
    seen.clear()
    Estimator(request(tmp_path / "out3", ["a"]), seen.append)(
        ModelLoaded("remote", 0.1, 0, endpoint="http://127.0.0.1:8080/v1"))
    assert len(seen) == 1  # a server's model is not timed


class TimedBackend(FakeBackend):
    """A scripted backend whose loads carry a measured speed, as a worker's first load does."""

    def load(self, spec: ModelSpec) -> FakeSession:
        session = super().load(spec)
        session.info.details.update({"prompt_tokens_per_s": 500.0, "decode_tokens_per_s": 40.0,
                                     "speed_source": "measured at load"})
        return session


def test_a_run_never_benched_gets_its_eta_at_the_first_load(tmp_path: Path) -> None:
    events: list = []
    backend = TimedBackend()
    req = request(tmp_path / "out", ["a"], samples=2, batch=2, max_attempts=4)
    assert req.predicted_seconds is None
    result = Run(req, backend, events.append, stop=backend.stop).execute()
    first_load = next(i for i, e in enumerate(events) if isinstance(e, ModelLoaded))
    assert isinstance(events[first_load + 1], Estimate)
    assert result.run_json.eta is not None
    assert result.run_json.eta.predicted_seconds == events[first_load + 1].predicted_seconds

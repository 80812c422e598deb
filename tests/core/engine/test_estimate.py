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
from gra_local.core.events import Estimate, ModelLoaded, Notice, StageProgress, StageStarted


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
                          opts.rounds, opts.panel, opts.seed_pool, judge=opts.judge,
                          canaries=opts.canaries)
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


def test_the_prediction_is_refined_from_the_runs_own_pace(tmp_path: Path) -> None:
    """Half the predicted work done in twice the time it should have taken: the run is
    predicted at twice its first estimate. Annotation that made fewer calls than the seed
    pool (fewer seeds) counts as done once another stage starts."""
    req = request(tmp_path / "out", ["a"], samples=4, seed_pool=10)
    seen: list = []
    sink = Estimator(req, seen.append)
    clock = [sink.started]
    sink.now = lambda: clock[0]  # type: ignore[method-assign]
    sink(loaded("a", 50.0))
    first = seen[-1].predicted_seconds
    stages = dict(sink.stages)
    sink(StageStarted(1, "annotate", 6))
    sink(StageProgress(1, "annotate", 6, 6, "a"))  # 6 seeds: the pool of 10 is not filled
    sink(StageStarted(1, "generate", stages["generate"][0]))
    assert sink.stages["annotate"] == (6, pytest.approx(stages["annotate"][1] * 0.6))
    work = sink.stages["annotate"][1] + stages["generate"][1] / 2
    clock[0] += 2 * work
    sink(StageProgress(1, "generate", stages["generate"][0] // 2, stages["generate"][0], "a"))
    refined = [e for e in seen if isinstance(e, Estimate) and e.refined]
    total = sum(s for _, s in sink.stages.values())
    assert refined and refined[-1].predicted_seconds == pytest.approx(2 * total, rel=0.02)
    assert refined[-1].note.endswith("(from the run's own pace)") and req.predicted_seconds == first


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

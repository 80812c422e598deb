"""The run's ETA from the speeds its models were measured at when they loaded, refined
from the run's own pace.

A run whose models were never benched starts without a predicted duration. Each local
model's first load on a machine measures its speed (backends.llama.speed); the load's
event carries it, and this sink, between the engine and the run's own sink, turns the
speeds known so far into a prediction (eta.predict_stages, every model at the mean speed
of those measured), kept in the request for run.json and sent as an `Estimate`. A model
whose probe failed is named, with why, in a Notice: its ETA is unknown.

Then, as calls finish, the prediction is refined from the run's own pace
(eta.refined_seconds: the share of the predicted work done against the seconds it took),
sent as a refined `Estimate` at most every REFINE_EVERY_S (the app counts it down; the
CLI prints only the first). Annotation's calls are those its stage announces (the seed
pool is not filled by a short seed file), and what it made once another stage starts.
"""

from __future__ import annotations

import time

from gra_local.core.engine.eta import Speed, refined_seconds, stages_for
from gra_local.core.engine.request import RunRequest
from gra_local.core.events import (
    Estimate,
    Event,
    EventSink,
    ModelLoaded,
    Notice,
    StageProgress,
    StageStarted,
)

REFINE_EVERY_S = 5.0
"""A refined estimate is sent at most this often."""


class Estimator:
    """An EventSink that passes every event on, and an `Estimate` after a model's load
    brings a speed the run had not (only where the run started without a prediction),
    then refined ones as the run's calls finish."""

    def __init__(self, req: RunRequest, sink: EventSink) -> None:
        self.req = req
        self.sink = sink
        self.now = time.monotonic
        self.started = self.now()
        self.speeds: dict[str, Speed] = {}
        self.active = req.predicted_seconds is None
        self.stages: dict[str, tuple[int, float]] = {}
        self.done: dict[str, int] = {}
        self._base: dict[str, int] = {}
        self._refined_at = 0.0
        self._annotate: int | None = None

    def __call__(self, event: Event) -> None:
        self.sink(event)
        if not self.active:
            return
        if isinstance(event, ModelLoaded) and event.endpoint is None:
            self._loaded(event)
        elif isinstance(event, StageStarted):
            self._base[event.stage] = self.done.get(event.stage, 0)
            if event.stage == "annotate":  # the seeds to annotate: the pool may not fill
                self._annotate = event.total
                self._rescale("annotate", event.total)
            else:  # annotation is over: what it really made
                self._rescale("annotate", self.done.get("annotate", 0))
            self._refine(force=True)
        elif isinstance(event, StageProgress):
            self.done[event.stage] = self._base.get(event.stage, 0) + event.done
            self._refine(force=event.done == event.total)

    def _loaded(self, event: ModelLoaded) -> None:
        if event.speed_error is not None:
            self.sink(Notice(f"ETA unknown for {event.name}: {event.speed_error}"))
            return
        if event.name in self.speeds or event.decode_tokens_per_s is None \
                or event.prompt_tokens_per_s is None:
            return
        self.speeds[event.name] = Speed(event.prompt_tokens_per_s, event.decode_tokens_per_s,
                                        event.seconds)
        self.stages = stages_for(self.speeds, self.req.options)
        if self._annotate is not None:
            self._rescale("annotate", self._annotate)
        seconds = round(sum(s for _, s in self.stages.values()), 1)
        names = ", ".join(self.speeds)
        note = (f"predicted duration: about {seconds / 60:.1f} min (from the speed measured as "
                f"{names} loaded)")
        self.req.predicted_seconds, self.req.eta_note = seconds, note
        self.sink(Estimate(seconds, note))

    def _rescale(self, stage: str, calls: int) -> None:
        """The stage makes `calls` calls, not the number predicted: its seconds in proportion."""
        predicted = self.stages.get(stage)
        if predicted is not None and predicted[0]:
            self.stages[stage] = (calls, predicted[1] * calls / predicted[0])

    def _refine(self, force: bool) -> None:
        now = self.now()
        if not self.stages or (not force and now - self._refined_at < REFINE_EVERY_S):
            return
        seconds = refined_seconds(self.stages, self.done, now - self.started)
        if seconds is None:
            return
        self._refined_at = now
        self.sink(Estimate(round(seconds, 1), f"predicted duration: about {seconds / 60:.1f} min "
                           "(from the run's own pace)", refined=True))

"""The run's ETA from the speeds its models were measured at when they loaded.

A run whose models were never benched starts without a predicted duration. Each local
model's first load on a machine measures its speed (backends.llama.speed); the load's
event carries it, and this sink, between the engine and the run's own sink, turns the
speeds known so far into a prediction (eta.predict_seconds, every model at the mean speed
of those measured), kept in the request for run.json and sent as an `Estimate`. A model
whose probe failed is named, with why, in a Notice: its ETA is unknown.
"""

from __future__ import annotations

from gra_local.core.engine.eta import Speed, predict_seconds
from gra_local.core.engine.request import RunRequest
from gra_local.core.events import Estimate, Event, EventSink, ModelLoaded, Notice


class Estimator:
    """An EventSink that passes every event on, and an `Estimate` after a model's load
    brings a speed the run had not (only where the run started without a prediction)."""

    def __init__(self, req: RunRequest, sink: EventSink) -> None:
        self.req = req
        self.sink = sink
        self.speeds: dict[str, Speed] = {}
        self.active = req.predicted_seconds is None

    def __call__(self, event: Event) -> None:
        self.sink(event)
        if not self.active or not isinstance(event, ModelLoaded) or event.endpoint is not None:
            return
        if event.speed_error is not None:
            self.sink(Notice(f"ETA unknown for {event.name}: {event.speed_error}"))
            return
        if event.name in self.speeds or event.decode_tokens_per_s is None \
                or event.prompt_tokens_per_s is None:
            return
        self.speeds[event.name] = Speed(event.prompt_tokens_per_s, event.decode_tokens_per_s,
                                        event.seconds)
        opts = self.req.options
        seconds = round(predict_seconds(self.speeds, opts.samples, opts.attempt_cap, opts.rounds,
                                        opts.panel, opts.seed_pool), 1)
        names = ", ".join(self.speeds)
        note = (f"predicted duration: about {seconds / 60:.1f} min (from the speed measured as "
                f"{names} loaded)")
        self.req.predicted_seconds, self.req.eta_note = seconds, note
        self.sink(Estimate(seconds, note))

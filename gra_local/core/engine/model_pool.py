"""Loaded models: load on demand, keep as many as the memory budget holds, evict the
least recently used.

`Residency` says how much memory each model costs and how much the machine gives us;
without one, a single model is resident at a time. Stages ask `order()` which model to
run first so that models still loaded go first: with one model, or with all models
resident, every model is loaded once for the whole run.

An endpoint model (served by OpenAI-compatible servers) costs no local memory: it stays
"loaded" (its session open) beside any local models and never counts against the budget or
`max_models`. When its servers stay down until the model is dropped, the run stops with
`EndpointDown` instead of going on without it. A local model whose worker is lost
MAX_WORKER_LOSSES times is dropped: the samples waiting on it are left undecided for a rerun
(waves.py), and the run goes on with the other models. A fault never becomes a verdict.

The pool keeps the worker-loss books of this session: what a failed load means (`session`),
which models are dropped and why (`lost`, `dropped`, `drop_reason`). run.json's
`worker_failures` is built from them (and from `ModelStats.worker_losses`, the run's total).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from gra_local.core.backend import Backend, Session
from gra_local.core.config import Registry
from gra_local.core.errors import EndpointDown, ModelError, WorkerLost
from gra_local.core.events import EventSink, ModelLoaded, ModelUnloaded, Notice
from gra_local.core.stats import RunStats

MAX_WORKER_LOSSES = 3
"""A model whose worker dies or misses its deadline this often is dropped for the session
(a rerun gives every model a new chance)."""


@dataclass(frozen=True)
class Residency:
    """Memory budget in bytes and each model's estimated footprint (weights + KV + compute)."""

    budget_bytes: int
    cost_bytes: dict[str, int] = field(default_factory=dict)
    max_models: int = 8  # worker processes alive at once, whatever the memory says

    def cost(self, name: str) -> int:
        return self.cost_bytes.get(name, self.budget_bytes)  # unknown: assume it fills the budget


class ModelPool:
    def __init__(self, backend: Backend, registry: Registry, stats: RunStats, emit: EventSink,
                 residency: Residency | None = None) -> None:
        self.backend = backend
        self.registry = registry
        self.stats = stats
        self.emit = emit
        self.residency = residency
        self._loaded: OrderedDict[str, Session] = OrderedDict()
        self._losses: dict[str, int] = {}
        """Worker losses per model in this session (a resume gives every model a new chance)."""
        self._last_loss: dict[str, str] = {}
        """What the model's latest lost worker said."""

    def _local(self, name: str) -> bool:
        """Loaded here (a GGUF model), not served by an endpoint."""
        return not self.registry.get(name).is_endpoint

    def _fits_beside(self, name: str) -> bool:
        local = [n for n in self._loaded if self._local(n)]
        if not local or not self._local(name):
            return True
        res = self.residency
        if res is None or len(local) >= res.max_models:
            return False
        used = sum(res.cost(n) for n in local)
        return used + res.cost(name) <= res.budget_bytes

    def session(self, name: str) -> Session:
        """The model's session, loaded if need be. A load that fails is decided here: the
        first load of the session raises ModelError (a model that cannot load is the user's
        to fix; an endpoint model's servers, which answered when the run started, went down
        since: EndpointDown); a reload after a lost worker raises WorkerLost, which the
        caller counts as one more loss (`lost`)."""
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        while not self._fits_beside(name):
            self._unload(next(n for n in self._loaded if self._local(n)))
        spec = self.registry.get(name)
        try:
            sess = self.backend.load(spec)
        except ModelError as exc:
            if self._losses.get(name):
                raise WorkerLost(f"reloading {name!r} failed: {exc.message}") from None
            if spec.is_endpoint:
                raise self._down(name, exc.message) from None
            raise
        ms = self.stats.model(name)
        ms.loads += 1
        ms.load_seconds += sess.info.seconds
        ms.n_gpu_layers = None if spec.is_endpoint else sess.info.n_gpu_layers
        ms.n_parallel = sess.info.n_parallel
        plan = sess.info.details.get("gpu_plan")
        ms.gpu_plan = str(plan) if plan is not None else None
        self._loaded[name] = sess
        facts = sess.info.details if spec.is_endpoint else {}  # where a server runs it
        endpoint, kind = facts.get("endpoint"), facts.get("server_kind")
        details = sess.info.details
        self.emit(ModelLoaded(name, sess.info.seconds, sess.info.n_gpu_layers,
                              None if endpoint is None else str(endpoint),
                              None if kind is None else str(kind),
                              _number(details.get("prompt_tokens_per_s")),
                              _number(details.get("decode_tokens_per_s")),
                              None if (err := details.get("speed_error")) is None else str(err)))
        return sess

    def _unload(self, name: str) -> None:
        sess = self._loaded.pop(name)
        sess.close()
        self.stats.model(name).unloads += 1
        self.emit(ModelUnloaded(name))

    def lost(self, name: str, error: WorkerLost) -> None:
        """The model's worker is gone (crashed, or killed for missing a deadline): forget
        the session, so the next call loads a fresh one, unless this was one loss too many:
        then the model is dropped for the rest of the session (an endpoint model stops the
        run: EndpointDown)."""
        sess = self._loaded.pop(name, None)
        if sess is not None:
            sess.close()
        self.stats.model(name).worker_losses += 1
        losses = self._losses[name] = self._losses.get(name, 0) + 1
        self._last_loss[name] = error.message
        if losses >= MAX_WORKER_LOSSES:
            if not self._local(name):
                raise self._down(name, error.message)
            self.emit(Notice(f"model {name!r} dropped for the rest of the run after {losses} "
                             f"worker failures (last: {error.message}); the samples waiting "
                             "on it are left for a rerun to finish"))
        else:
            self.emit(Notice(f"{error.message}; its calls are asked again of a fresh worker"))

    def _down(self, name: str, reason: str) -> EndpointDown:
        """The run cannot go on without an endpoint model: stop it, resumable. Its URLs were
        checked credential-free when the models file was read (ModelSpec)."""
        where = ", ".join(self.registry.get(name).endpoints)
        return EndpointDown(f"endpoint model {name!r} at {where} is unreachable ({reason}); "
                            "the run stopped: rerun the same command to resume once its server "
                            "is back")

    def dropped(self, name: str) -> bool:
        """Lost its worker too often in this session: no more calls until a resume."""
        return self._losses.get(name, 0) >= MAX_WORKER_LOSSES

    def drop_reason(self, name: str) -> str | None:
        """Why the model was dropped for the rest of this session (None: it was not)."""
        if not self.dropped(name):
            return None
        return f"{self._losses[name]} worker failures; the last: {self._last_loss[name]}"

    def usable(self, names: list[str]) -> list[str]:
        """`names` without the dropped models."""
        return [n for n in names if not self.dropped(n)]

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def order(self, names: set[str] | list[str]) -> list[str]:
        """Loaded models first (most recently used first), then the others by name."""
        wanted = set(names)
        loaded = [n for n in reversed(self._loaded) if n in wanted]
        return loaded + sorted(wanted - set(loaded))

    def close_all(self) -> None:
        for name in list(self._loaded):
            self._unload(name)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

"""Loaded models: load on demand, keep at most `max_resident`, evict least recently used.

Stages ask `order()` which model to run first so that the model still loaded from the
previous stage goes first: with one model the whole run loads it once.
"""

from __future__ import annotations

from collections import OrderedDict

from gra_local.core.backend import Backend, Session
from gra_local.core.config import Registry
from gra_local.core.events import EventSink, ModelLoaded, ModelUnloaded
from gra_local.core.stats import RunStats


class ModelPool:
    def __init__(self, backend: Backend, registry: Registry, stats: RunStats, emit: EventSink,
                 max_resident: int = 1) -> None:
        self.backend = backend
        self.registry = registry
        self.stats = stats
        self.emit = emit
        self.max_resident = max(1, max_resident)
        self._loaded: OrderedDict[str, Session] = OrderedDict()

    def session(self, name: str) -> Session:
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        while len(self._loaded) >= self.max_resident:
            self._unload(next(iter(self._loaded)))
        sess = self.backend.load(self.registry.get(name))
        ms = self.stats.model(name)
        ms.loads += 1
        ms.load_seconds += sess.info.seconds
        ms.n_gpu_layers = sess.info.n_gpu_layers
        self._loaded[name] = sess
        self.emit(ModelLoaded(name, sess.info.seconds, sess.info.n_gpu_layers))
        return sess

    def _unload(self, name: str) -> None:
        sess = self._loaded.pop(name)
        sess.close()
        self.stats.model(name).unloads += 1
        self.emit(ModelUnloaded(name))

    def order(self, names: set[str] | list[str]) -> list[str]:
        """Loaded models first (most recently used first), then the others by name."""
        wanted = set(names)
        loaded = [n for n in reversed(self._loaded) if n in wanted]
        return loaded + sorted(wanted - set(loaded))

    def close_all(self) -> None:
        for name in list(self._loaded):
            self._unload(name)

"""A model's speed, measured once per machine at its first load, for the run's ETA.

The first time a model file is loaded with a placement (GPU layers) on this machine and this
llama.cpp build, the fresh session times a short prompt and a short generation
(models.bench.measure: about 300 prompt tokens and PROBE_TOKENS generated, a second or two
for a small model on a CPU) and keeps the figures in the cache (models.bench.BenchStore,
keyed by the file, its size and mtime, the GPU layers, the cores and the build); every later
load reads them back. The load's details then carry them (`prompt_tokens_per_s`,
`decode_tokens_per_s`, `speed_source`), and the engine turns
them into an ETA as each model loads (core.engine.estimate). A probe that fails leaves
`details["speed_error"]` saying why: the model loads anyway, its ETA is unknown.

`GRA_LOCAL_SPEED_PROBE=0` turns measuring off (cached figures are still read).
"""

from __future__ import annotations

import os
from pathlib import Path

from gra_local.core import paths
from gra_local.core.backend import Session
from gra_local.core.config import ModelSpec
from gra_local.core.errors import GraError
from gra_local.models.bench import BenchStore, measure

PROBE_TOKENS = 24
"""Tokens generated to time decoding: enough for a steady rate, few enough to be quick."""
PROBE_ENV = "GRA_LOCAL_SPEED_PROBE"


def attach_speed(spec: ModelSpec, path: Path, session: Session) -> None:
    """Put the model's speed on its load's details: cached, else measured now (see above)."""
    store = BenchStore(paths.cache_dir())
    layers = session.info.n_gpu_layers
    found = store.get(path, layers)
    source = "cached"
    if found is None:
        if os.environ.get(PROBE_ENV, "1") == "0":
            return
        try:
            found = measure(session, spec.name, session.info.seconds, PROBE_TOKENS)
        except GraError as exc:
            session.info.details["speed_error"] = f"the speed probe failed: {exc}"
            return
        try:
            store.save(path, found)
        except OSError as exc:  # a read-only cache: measured again next time
            session.info.details["speed_note"] = f"not cached ({exc.strerror or exc})"
        source = "measured at load"
    session.info.details.update({"prompt_tokens_per_s": found.prompt_tokens_per_s,
                                 "decode_tokens_per_s": found.decode_tokens_per_s,
                                 "speed_source": source})

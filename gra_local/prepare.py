"""Everything checked before a run starts, shared by the CLI and the TUI: options, seeds
file, every model file (header, chat template, context, hash), residency and the ETA."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from gra_local.core import paths
from gra_local.core.config import Registry, RunOptions, option_field
from gra_local.core.engine.eta import Speed, predict_seconds
from gra_local.core.engine.request import RunRequest
from gra_local.core.errors import ConfigError, SeedError
from gra_local.models.bench import BenchStore
from gra_local.models.fit import residency_for
from gra_local.models.resolve import check_model_file, model_ref

SetBy = Literal["cli", "app"]
"""Who set the values: the CLI's flags or the app's New run form."""


def build_options(values: Mapping[str, object], set_by: SetBy) -> RunOptions:
    """RunOptions from the CLI's or the app's values; an invalid one is a ConfigError that
    names the option in the words of the surface that set it (`--tau: …` from the CLI,
    `tau: …`, the form's label, from the app), so the message points at what the person
    typed. The app passes its inputs' text as typed: pydantic parses it, and says so when
    it is not a number."""
    try:
        return RunOptions(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
        if name in RunOptions.model_fields:
            field = option_field(name)
            name = field.flag if set_by == "cli" else field.surface.label
        raise ConfigError(f"{name}: {msg}") from None


def prepare_run(seeds: Path, out_dir: Path, options: RunOptions, registry: Registry,
                models_source: str, restart: bool = False, review: bool = False) -> RunRequest:
    if not seeds.is_file():
        raise SeedError(f"{seeds}: {'data' if review else 'seed'} file not found")
    refs, checked = {}, []
    for spec in registry.models:  # fail on a bad model file now, not after an hour
        _, info = check_model_file(spec)
        checked.append((spec, info))
        refs[spec.name] = model_ref(spec, info=info)
    request = RunRequest(seeds=seeds, out_dir=out_dir, options=options, registry=registry,
                         refs=refs, models_source=models_source, cache_dir=paths.cache_dir(),
                         restart=restart, residency=residency_for(checked),
                         embedder=load_embedder(options))
    if not review:  # the ETA model covers generation runs
        request.predicted_seconds, request.eta_note = _predict(options, checked)
    return request


def load_embedder(options: RunOptions) -> object | None:
    """The sentence embedder dedup needs, or None when dedup is off."""
    if options.dedup_threshold is None:
        return None
    from gra_local.embed.minilm_files import embedder_path, is_present

    data = paths.data_dir()
    if not is_present(data):
        raise ConfigError(f"semantic dedup needs the all-MiniLM-L6-v2 embedding model, which "
                          f"is not in {embedder_path(data)}: run `gra-local models "
                          "pull-embedder` once (or pass --no-dedup)")
    from gra_local.embed.minilm import MiniLMEmbedder

    return MiniLMEmbedder(embedder_path(data))


def _predict(opts: RunOptions, checked: list) -> tuple[float | None, str]:
    """Predicted duration from stored `models bench` figures, and the line that says so."""
    store = BenchStore(paths.cache_dir())
    speeds, missing = {}, []
    for spec, info in checked:
        bench = store.latest(Path(info.path))
        if bench is None:
            missing.append(spec.name)
        else:
            speeds[spec.name] = Speed(bench.prompt_tokens_per_s, bench.decode_tokens_per_s,
                                      bench.load_seconds)
    if missing:
        return None, f"no ETA: run `gra-local models bench NAME` once for {', '.join(missing)}"
    seconds = predict_seconds(speeds, opts.samples, opts.attempt_cap, opts.rounds, opts.panel,
                              opts.seed_pool)
    return seconds, f"predicted duration: about {seconds / 60:.1f} min (from `models bench` figures)"

"""Everything checked before a run starts, shared by the CLI and the TUI: options, seeds
file, every model file (header, chat template, context, hash), residency and the ETA. An
endpoint model has no file: its servers are contacted once here (the models file names
them, and the run would contact them anyway) for its provenance and context."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from gra_local.backends.routing import endpoint_ref
from gra_local.core import paths, prompts
from gra_local.core.config import ModelSpec, Registry, Role
from gra_local.core.engine.calls import reply_room
from gra_local.core.engine.request import RunRequest
from gra_local.core.errors import ConfigError, SeedError
from gra_local.core.grammars import FEEDBACK_MAX, INSTRUCTION_MAX
from gra_local.core.options import MAX_SAMPLES, RunOptions, option_field
from gra_local.core.records import SCORE_FIELDS, DraftInstruction, ModelRef, Review, Scores
from gra_local.models.bench import predict_from_cache
from gra_local.models.fit import context_for, residency_for
from gra_local.models.gguf_info import GGUFInfo
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


def review_options(values: Mapping[str, object], set_by: SetBy) -> RunOptions:
    """build_options for a review-only run (`gra-local review`, the app's review mode). It
    has no samples to ask for: RunOptions needs one, and the review source judges every
    pair whatever it is (review_only.judge_every_pair); the ETA reads this one."""
    return build_options({"samples": MAX_SAMPLES, **values}, set_by)


def prepare_run(seeds: Path, out_dir: Path, options: RunOptions, registry: Registry,
                models_source: str, restart: bool = False, review: bool = False) -> RunRequest:
    if not seeds.is_file():
        raise SeedError(f"{seeds}: {'data' if review else 'seed'} file not found")
    refs: dict[str, ModelRef] = {}
    checked: list[tuple[ModelSpec, GGUFInfo]] = []
    contexts: dict[str, int] = {}
    for spec in registry.models:  # fail on a bad model file or server now, not after an hour
        if spec.is_endpoint:
            refs[spec.name], n_ctx = endpoint_ref(spec)
            if n_ctx > 0:  # a server that reports no context is not checked
                contexts[spec.name] = n_ctx
            continue
        _, info = check_model_file(spec)
        checked.append((spec, info))
        refs[spec.name] = model_ref(spec, info=info)
        contexts[spec.name] = context_for(spec, info)
    if not review:  # review-only data has no budget: a pair too long is rejected `too_long`
        check_contexts(registry, options, contexts)
    endpoints = [spec.name for spec in registry.models if spec.is_endpoint]
    request = RunRequest(seeds=seeds, out_dir=out_dir, options=options, registry=registry,
                         refs=refs, models_source=models_source, cache_dir=paths.cache_dir(),
                         restart=restart, residency=residency_for(checked, endpoints=endpoints),
                         embedder=load_embedder(options), scorer=pick_scorer(checked))
    if not review:  # the ETA model covers generation runs
        request.predicted_seconds, request.eta_note = predict_from_cache(options, checked, endpoints)
    return request


def pick_scorer(checked: list[tuple[ModelSpec, GGUFInfo]]) -> str | None:
    """The model that scores likelihood: the models file's `scorer = true` one, else the
    smallest GGUF (a forward pass reads as well at 135M as larger, and costs least); None
    with no GGUF model (endpoint models cannot score given text)."""
    chosen = [spec.name for spec, _ in checked if spec.scorer]
    if chosen:
        return chosen[0]
    return min(checked, key=lambda c: (c[1].size_bytes, c[0].name))[0].name if checked else None


CHAT_MARKUP_TOKENS = 8
"""Tokens a chat template may add around one message (role markers, separators)."""


def prompt_tokens_bound(messages: list[dict[str, str]]) -> int:
    """Tokens of a chat prompt, counted conservatively without a tokenizer: UTF-8 bytes / 2
    (English text runs about 4 bytes a token), plus the template's markup per message."""
    return sum(-(-len(m["content"].encode("utf-8")) // 2) + CHAT_MARKUP_TOKENS for m in messages)


def check_contexts(registry: Registry, options: RunOptions, contexts: dict[str, int]) -> None:
    """Refuses, before any load, a generator whose answers (`max_tokens`) cannot fit a
    reviewer's or adjudicator's context (`contexts`: n_ctx by model) together with the
    prompt (an instruction of the longest length its grammar allows) and the room the
    judge's reply needs, or its own context with the answer prompt, or whose context cannot
    hold a draft call even without examples. Every call of such a pair would come back
    "too_long"; a ConfigError names both models and the numbers. A model missing from
    `contexts` (an endpoint whose server reports no context) is not checked."""
    instruction = "x" * INSTRUCTION_MAX
    reply = reply_room(Scores)
    draft = prompt_tokens_bound(prompts.draft("qa", [], 0)) + reply_room(DraftInstruction)
    full = Scores(**dict.fromkeys(SCORE_FIELDS, 10), feedback="x" * FEEDBACK_MAX)
    panel = [Review(model="", scores=full) for _ in range(options.panel)]
    prompt = {Role.GENERATOR: prompt_tokens_bound(prompts.answer(instruction)),
              Role.REVIEWER: prompt_tokens_bound(prompts.review_response(instruction, "", 0)) + reply,
              Role.ADJUDICATOR: prompt_tokens_bound(prompts.adjudicate(instruction, "", panel, 0)) + reply}
    stage = {Role.GENERATOR: "answer prompt", Role.REVIEWER: "review prompt and reply",
             Role.ADJUDICATOR: "adjudication prompt and reply"}
    for gen in registry.with_role(Role.GENERATOR):
        if gen.name in contexts and draft > contexts[gen.name]:
            raise ConfigError(f"generator {gen.name!r}: its n_ctx {contexts[gen.name]} cannot hold "
                              f"the draft prompt and reply (up to {draft} tokens without "
                              "examples): raise its n_ctx")
        answer = gen.sampling_for(Role.GENERATOR).max_tokens
        pairs = [(role, judge) for role in (Role.GENERATOR, Role.REVIEWER, Role.ADJUDICATOR)
                 for judge in ([gen] if role is Role.GENERATOR else registry.with_role(role))
                 if judge.name in contexts]
        if not pairs:
            continue
        # the tightest pair, so that the max_tokens the message suggests fits every judge
        role, judge = min(pairs, key=lambda p: contexts[p[1].name] - prompt[p[0]])
        n_ctx, need = contexts[judge.name], prompt[role]
        if answer + need > n_ctx:
            whose = "its own n_ctx" if role is Role.GENERATOR else f"the n_ctx of {role.value} {judge.name!r},"
            raise ConfigError(
                f"generator {gen.name!r}: max_tokens {answer} does not fit {whose} {n_ctx}, "
                f"with the {stage[role]} (up to {need} tokens): set "
                f"[models.sampling.generator] max_tokens = {max(0, n_ctx - need)} or less for "
                f"{gen.name!r}, or raise the n_ctx of {judge.name!r}")


def load_embedder(options: RunOptions) -> object | None:
    """The sentence embedder dedup and the relevance check share: required with dedup on;
    with dedup off, loaded for the relevance check when it is installed (else None, and the
    run turns the check off with a note); None when neither needs it."""
    if options.dedup_threshold is None and not options.relevance:
        return None
    from gra_local.embed.minilm_files import embedder_path, is_present

    data = paths.data_dir()
    if not is_present(data) and options.dedup_threshold is None:
        return None
    if not is_present(data):
        raise ConfigError(f"semantic dedup needs the all-MiniLM-L6-v2 embedding model, which "
                          f"is not in {embedder_path(data)}: run `gra-local models "
                          "pull-embedder` once (or pass --no-dedup)")
    from gra_local.embed.minilm import MiniLMEmbedder

    return MiniLMEmbedder(embedder_path(data))

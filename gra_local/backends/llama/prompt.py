"""The `Llama` a worker decodes with, and the exact prompt tokens of a chat request.

Prompts stay byte-identical to what `Llama.create_chat_completion` would decode, for every
chat format (the GGUF's own Jinja template or a named llama-cpp-python format): one
`create_chat_completion` call runs with `create_completion` and `generate` intercepted on
the instance; the first records the stop strings the format adds, the second receives
the prompt tokens and ends the call before anything is evaluated.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import llama_cpp

SEQS_PER_SLOT = 3
"""Sequence ids a context has for each of its n_parallel slots: one for chat, two for a
scored pair."""
MAX_SEQ = 256
"""The most llama.cpp takes (LLAMA_MAX_SEQ; its bindings do not export it)."""


FLASH_ATTN = True
"""Flash attention on. Without it llama.cpp's CPU attention gives a sequence logits that
depend on where its cells lie in the shared cache, so on whatever else the cache holds
(SmolLM2-135M Q4_1: 0.05 nats a token on average, up to 0.35, between the same tokens
with cells from offset 0 and from offset 8); with it they depend only on the order of
the sequence's own cells and on batch sizes (the scorer's rules for exact log-probs,
scoring.py)."""


def load_llama(path: str, *, kv_cells: int, n_parallel: int, n_gpu_layers: int, n_threads: int,
               chat_format: str | None, seed: int, verbose: bool = True) -> Any:
    """A `Llama` whose context holds `n_parallel` sequences in one unified KV cache of
    `kv_cells` cells: every sequence may use any free cell, and a prefix copied to another
    sequence (`llama_memory_seq_cp`), or decoded once into several, shares its cells
    instead of using new ones. Its context takes SEQS_PER_SLOT × n_parallel sequence ids
    (at most MAX_SEQ): the decoder's, then a pair per slot for the scorer (scoring.py); an
    id costs no KV memory in a unified cache, only an output row reserved at load.

    `Llama` takes neither setting, so its context parameters are made by a patched
    `llama_context_default_params` for the duration of the constructor."""
    module = llama_cpp.llama.llama_cpp  # the module llama.py calls through
    original = module.llama_context_default_params

    def parallel_params() -> Any:
        params = original()
        params.n_seq_max = min(MAX_SEQ, SEQS_PER_SLOT * n_parallel)
        params.kv_unified = True
        return params

    module.llama_context_default_params = parallel_params
    try:
        return llama_cpp.Llama(
            model_path=path,
            n_ctx=kv_cells,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
            n_threads_batch=n_threads,  # batched generation steps run on these, not n_threads
            flash_attn=FLASH_ATTN,
            chat_format=chat_format,
            seed=seed,
            verbose=verbose,  # the worker's log file: load errors stay diagnosable
        )
    finally:
        module.llama_context_default_params = original


class _Captured(Exception):
    """Raised from the intercepted `generate`: the prompt is known, nothing was evaluated."""


_COMPLETION = inspect.signature(llama_cpp.Llama.create_completion)


def chat_prompt(llm: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
    """(prompt tokens, stop strings) of `messages` as `create_chat_completion` builds them.

    A prompt longer than the context is tokenized too (the call's length check is lifted
    meanwhile): the decoder answers it "too_long". Raises what that call raises for a
    prompt it refuses otherwise (a template error)."""
    seen: dict[str, Any] = {}
    original = llm.create_completion
    n_ctx = llm._n_ctx

    def create_completion(*args: Any, **kwargs: Any) -> Any:
        bound = _COMPLETION.bind(llm, *args, **kwargs)
        stop = bound.arguments.get("stop")
        seen["stop"] = [stop] if isinstance(stop, str) else list(stop or [])
        return original(*args, **kwargs)

    def generate(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        seen["tokens"] = [int(t) for t in tokens]
        raise _Captured

    llm.create_completion = create_completion
    llm.generate = generate
    llm._n_ctx = sys.maxsize  # nothing is evaluated: `generate` ends the call first
    try:
        llm.create_chat_completion(messages=messages, max_tokens=1)
    except _Captured:
        pass
    finally:
        del llm.create_completion
        del llm.generate
        llm._n_ctx = n_ctx
    if "tokens" not in seen:
        raise RuntimeError(f"chat format {llm.chat_format!r} does not build its prompt through "
                           "create_completion; the batched decoder cannot use it")
    return seen["tokens"], [s for s in seen.get("stop", []) if s]

"""What each kind of server takes: the one table the request builder and detection read.

Sources: llama.cpp's server README (`grammar`, `/props`), llama-cpp-python's server
(`llama_cpp/server/types.py`: `grammar`, `repeat_penalty` defaulting to 1.1, so it is
always sent), vLLM's structured-outputs docs (`structured_outputs: {"grammar": …}` from
0.10.2; the `guided_*` fields it replaced were removed in 0.12; xgrammar, which reads
GBNF, became the default grammar backend in 0.6.5, before which `guided_grammar` went to
Lark-dialect backends, so the JSON schema is sent instead), Ollama's `openai/openai.go`
(`response_format.json_schema.schema` becomes the native `format`; no repeat penalty
field) and LM Studio's / OpenAI's structured-output docs (`response_format` with
`json_schema: {name, schema, strict}`; OpenAI's strict mode wants every property required).

`repeat_penalty` is multiplicative on llama.cpp (`repeat_penalty`) and vLLM
(`repetition_penalty`); Ollama's OpenAI layer, LM Studio and OpenAI have only the additive
`frequency_penalty`/`presence_penalty`, a different rule, so nothing is sent to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gra_local.backends.endpoint.config import ServerKind

Structured = Literal["grammar", "vllm", "json_schema"]


@dataclass(frozen=True)
class Capability:
    label: str
    structured: Structured
    """How a grammar-bound request is sent: our GBNF in `grammar`, vLLM's own fields
    (by version), or the JSON schema in `response_format`."""
    penalty_field: str | None
    """The name `ChatRequest.repeat_penalty` goes by there; None: not sent."""
    strict_schema: bool = False
    """The schema in OpenAI's strict shape (every property required, no defaults)."""


CAPABILITIES: dict[ServerKind, Capability] = {
    "llama.cpp": Capability("llama.cpp server", "grammar", "repeat_penalty"),
    "vllm": Capability("vLLM", "vllm", "repetition_penalty"),
    "ollama": Capability("Ollama", "json_schema", None),
    "lmstudio": Capability("LM Studio", "json_schema", None),
    "openai": Capability("OpenAI-compatible server", "json_schema", None, strict_schema=True),
}

VllmField = Literal["structured_outputs", "guided_grammar", "guided_json"]
VLLM_STRUCTURED_OUTPUTS = (0, 10, 2)
VLLM_XGRAMMAR_DEFAULT = (0, 6, 5)


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """(0, 10, 2) of "0.10.2", "v0.10.2rc1" or "0.10.2.post1"; None when unreadable."""
    if not version:
        return None
    found = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if found is None:
        return None
    return tuple(int(part or 0) for part in found.groups())


def vllm_field(version: str | None) -> VllmField:
    """Where vLLM of this version takes our grammar; an unknown version is taken as new."""
    parsed = version_tuple(version)
    if parsed is None or parsed >= VLLM_STRUCTURED_OUTPUTS:
        return "structured_outputs"
    return "guided_grammar" if parsed >= VLLM_XGRAMMAR_DEFAULT else "guided_json"

"""Pure functions: the JSON body of a chat request for each kind of server, and the
`ChatResult` of a reply body (or `Malformed`, which the session retries)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from gra_local.backends.endpoint.capabilities import CAPABILITIES, vllm_field
from gra_local.backends.endpoint.config import ServerKind
from gra_local.backends.endpoint.schemas import schema_for, strict_schema
from gra_local.core.backend import ChatRequest, ChatResult

JsonObject = dict[str, Any]


def chat_body(kind: ServerKind, version: str | None, model: str, request: ChatRequest) -> JsonObject:
    """POST {base}/chat/completions body for `request` on a server of this kind (and
    version, which only vLLM's fields depend on). Never streamed."""
    body: JsonObject = {
        "model": model,
        "messages": request.messages,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "stream": False,
    }
    capability = CAPABILITIES[kind]
    if capability.penalty_field is not None:
        body[capability.penalty_field] = request.repeat_penalty
    if request.grammar is not None:
        body.update(structured_fields(kind, version, request.grammar))
    return body


def structured_fields(kind: ServerKind, version: str | None, grammar: str) -> JsonObject:
    """The fields that bind the reply to `grammar` on this server."""
    capability = CAPABILITIES[kind]
    if capability.structured == "grammar":
        return {"grammar": grammar}
    if capability.structured == "vllm":
        field = vllm_field(version)
        if field == "structured_outputs":
            return {"structured_outputs": {"grammar": grammar}}
        if field == "guided_grammar":
            return {"guided_grammar": grammar}
        return {"guided_json": schema_for(grammar)[1]}
    name, schema = schema_for(grammar)
    if capability.strict_schema:
        schema = strict_schema(schema)
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": name, "schema": schema, "strict": True}}}


class Malformed(Exception):
    """A 2xx reply that is not a chat completion (not JSON, no choices)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Message(_Lenient):
    content: str | None = None


class _Choice(_Lenient):
    message: _Message
    finish_reason: str | None = None


class _Details(_Lenient):
    cached_tokens: int | None = None


class _Usage(_Lenient):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _Details | None = None


class _Completion(_Lenient):
    choices: list[_Choice]
    usage: _Usage | None = None


def parse_reply(raw: bytes, seconds: float) -> ChatResult:
    """The result of a chat completion body; `Malformed` when it is none."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Malformed("the reply is not JSON") from None
    try:
        completion = _Completion.model_validate(data)
    except ValidationError:
        raise Malformed("the reply is not a chat completion") from None
    if not completion.choices:
        raise Malformed("the reply has no choices")
    choice = completion.choices[0]
    usage = completion.usage or _Usage()
    prompt = usage.prompt_tokens or 0
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else None
    return ChatResult(
        text=choice.message.content or "",
        finish_reason="length" if choice.finish_reason == "length" else "stop",
        prompt_tokens=prompt,
        completion_tokens=usage.completion_tokens or 0,
        prompt_evaluated=max(0, prompt - cached) if cached is not None else None,
        seconds=seconds,
    )

"""A scripted backend for scheduler tests: answers by role, counts loads and calls.

It tests the scheduler's bookkeeping (draws, decisions, resume), never the engine: the
engine is proven on real llama.cpp in tests/backends and tests/test_e2e.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from gra_local.core import prompts
from gra_local.core.backend import ChatRequest, ChatResult, LoadInfo, ScoreRequest, ScoreResult, TokenChoice
from gra_local.core.config import ModelSpec

SCORES_9 = {"correctness": 9, "clarity": 9, "completeness": 9, "relevance": 9, "coherence": 9,
            "ethics": 9, "feedback": "good"}
PASS = {"reasonable": "pass", "complete": "pass", "clear": "pass"}


def scores(value: int, feedback: str = "ok") -> dict:
    return {k: value for k in SCORES_9 if k != "feedback"} | {"feedback": feedback}


ROLE_BY_SYSTEM = {
    prompts.ANNOTATE_SYSTEM: "annotate",
    prompts.DRAFT_SYSTEM: "draft",
    prompts.ANSWER_SYSTEM: "answer",
    prompts.REVIEW_A_SYSTEM: "review_a",
    prompts.REVIEW_B_SYSTEM: "review_b",
    prompts.ADJUDICATE_SYSTEM: "adjudicate",
}


@dataclass
class Call:
    model: str
    role: str
    request: ChatRequest
    wave: int | None = None
    """Index in `FakeBackend.waves` of the `chat_many` that made it (None: a plain `chat`)."""


def fenced(call: Call) -> list[str]:
    """The texts a call's user message fences (prompts.py), in order: instruction, response,
    then each reviewer's feedback for the adjudicator."""
    text = call.request.messages[-1]["content"]
    named = re.search(r"^Data fence: (DATA-[0-9a-f]{6})\.$", text, re.M)
    assert named is not None, text
    tag = named.group(1)
    return re.findall(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.S)


def certain(text: str, spread: float = 0.0) -> list[TokenChoice]:
    """Choices for a JSON reply as a model sure of every value would report them: all the
    mass on the written value (less `spread`, which goes to "0" for a score and "fail" for
    a verdict). Probed where the decoder probes: right after each key's colon."""
    out = []
    for m in re.finditer(r'": ?("?)([0-9]+|pass|fail)', text):
        value = m.group(2)
        offset = m.start(2) - len(m.group(1))
        first = m.group(1) + value[0] if value.isdigit() else m.group(1) + value
        if value.isdigit():
            probs = {first: 1.0 - spread} | ({m.group(1) + "0": spread} if spread else {})
            out.append(TokenChoice(offset=offset, probs=probs))
            if value.startswith("1"):  # the decoder probes the digit after a "1"
                nxt = "0" if value == "10" else ","
                out.append(TokenChoice(offset=m.start(2) + 1, probs={nxt: 1.0}))
        else:
            other = m.group(1) + ("fail" if value == "pass" else "pass")
            out.append(TokenChoice(offset=offset, probs={first: 1.0 - spread, other: spread}))
    return out


Reply = dict | str | tuple[str, str]  # JSON object, free text, or (text, finish_reason)
Script = Callable[[Call], Reply | None]
TOO_LONG: Reply = ("", "too_long")
"""The reply of a prompt too long for the model's context (never decoded: no completion)."""
TOO_LONG_PROMPT = 5000
"""Prompt tokens a too_long reply reports (the fake session's context is 2048)."""


def default_reply(call: Call) -> Reply:
    if call.role == "annotate":
        return {"domain": "math", "keywords": ["sum", "list", "loop"], "summary": "Adding numbers."}
    if call.role == "draft":
        n = call.request.seed % 1000
        return {"keywords": ["add", "numbers", f"k{n}"], "summary": "Adding two numbers.",
                "instruction": f"What is {n} plus {n}? Explain briefly."}
    if call.role == "answer":
        return "The answer is twice the number."
    if call.role == "review_a":
        return PASS
    return SCORES_9


@dataclass
class FakeBackend:
    script: Script | None = None
    calls: list[Call] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    stop_after: int | None = None  # set `stop` after this many calls (simulates Ctrl-C)
    stop: threading.Event = field(default_factory=threading.Event)
    waves: list[int] = field(default_factory=list)
    """Requests per `chat_many`, in call order (a call's `wave` indexes this)."""
    scored: list[ScoreRequest] = field(default_factory=list)
    """Every scoring request, in order (`FakeSession.score_many`)."""
    wave_models: list[str] = field(default_factory=list)
    """The model of each wave."""
    probes: Callable[[Call, str], list[TokenChoice]] | None = None
    """The token choices a reply reports when its request asks for probes (None: none,
    as from a server without token probabilities)."""

    def load(self, spec: ModelSpec) -> FakeSession:
        self.loads.append(spec.name)
        return FakeSession(self, spec.name)


class FakeSession:
    def __init__(self, backend: FakeBackend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.info = LoadInfo(name=name, seconds=0.01, n_gpu_layers=0, n_ctx=2048)
        self.closed = False
        self.on_result: Callable[[int, int], None] | None = None
        """As a worker's session: told of each result before chat_many returns."""

    def chat_many(self, requests: Sequence[ChatRequest],
                  cancel: threading.Event | None = None) -> list[ChatResult]:
        """Each request through `chat`, in order; once `cancel` is set (`stop_after` sets
        the run's stop mid-wave) the rest come back cancelled, unanswered and uncounted."""
        assert not self.closed, "chat after close"
        wave = len(self.backend.waves)
        self.backend.waves.append(len(requests))
        self.backend.wave_models.append(self.name)
        out = []
        for request in requests:
            if cancel is not None and cancel.is_set():
                out.append(ChatResult(text="", finish_reason="cancelled", prompt_tokens=0,
                                      completion_tokens=0))
            else:
                out.append(self.chat(request, wave))
                if self.on_result is not None:
                    self.on_result(len(out) - 1, out[-1].completion_tokens)
        return out

    def chat(self, request: ChatRequest, wave: int | None = None) -> ChatResult:
        assert not self.closed, "chat after close"
        call = Call(self.name, ROLE_BY_SYSTEM[request.messages[0]["content"]], request, wave)
        self.backend.calls.append(call)
        reply = self.backend.script(call) if self.backend.script else None
        if reply is None:
            reply = default_reply(call)
        finish = "stop"
        if isinstance(reply, tuple):
            reply, finish = reply
        text = reply if isinstance(reply, str) else orjson.dumps(reply).decode()
        if self.backend.stop_after is not None and len(self.backend.calls) >= self.backend.stop_after:
            self.backend.stop.set()
        if finish == "too_long":
            return ChatResult(text="", finish_reason=finish, prompt_tokens=TOO_LONG_PROMPT,
                              completion_tokens=0, prompt_evaluated=0, seconds=0.0)
        choices = []
        if self.backend.probes is not None and request.probe_after:
            choices = self.backend.probes(call, text)
        return ChatResult(text=text, finish_reason=finish, prompt_tokens=100,
                          completion_tokens=20, prompt_evaluated=30, seconds=0.001,
                          choices=choices)

    def score_many(self, requests: Sequence[ScoreRequest],
                   cancel: threading.Event | None = None) -> list[ScoreResult]:
        """A stand-in reading of each response (its words: -1 when the instruction has them,
        else -3; after the empty instruction -2.5; ending on "." likely), or None from
        `backend.scores` when it gives one. Counted in `backend.scored`."""
        assert not self.closed, "score after close"
        out = []
        for request in requests:
            self.backend.scored.append(request)
            words = request.response.split()
            if not words:
                out.append(ScoreResult(finish_reason="empty"))
                continue
            asked = set(request.messages[-1]["content"].lower().split())
            out.append(ScoreResult(
                finish_reason="ok", logprobs=[-1.0 if w.lower() in asked else -3.0 for w in words],
                baseline_logprobs=[-2.5] * len(words), response_tokens=len(words),
                end_logprob=-0.5 if request.response.rstrip().endswith(".") else -6.0))
        return out

    def close(self) -> None:
        self.closed = True


class HashEmbedder:
    """A deterministic bag-of-words embedder for dedup bookkeeping tests: texts with the
    same words get the same vector. (Real MiniLM embeddings are tested in tests/embed.)"""

    name = "fake-hash"
    sha256 = "f" * 64
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]):
        import zlib

        import numpy as np

        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, zlib.crc32(word.strip(".,?!").encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

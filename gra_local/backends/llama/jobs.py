"""What the batched decoder (decode.py) is asked and answers, and a job's decoding state.

A `Job` is one chat request, already tokenized; its `Outcome` comes back with the text and
counts, and with one `Choice` per probed position (`Job.probe_after`): the distribution
the model chose that position's token from, for the engine's expected score (G-Eval).
While a job decodes, its state is a `Running`, made when it is admitted and dropped when
it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    tokens: list[int]
    stop: list[str]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    repeat_penalty: float = 1.0
    grammar: str | None = None
    stream_partials: bool = False
    min_room: int = 0  # reply tokens the context must hold after the prompt (0: max_tokens)
    probe_after: list[bytes] = field(default_factory=list)
    """Probe every position whose output so far ends with one of these (UTF-8), and the
    position after a probed one whose chosen token is all ASCII digits."""


@dataclass
class Choice:
    """The distribution one probed position's token was chosen from."""

    offset: int
    """Character offset in `Outcome.text` where the chosen token's text begins."""
    probs: dict[str, float]
    """Token text → probability (softmax at temperature 1 over the grammar-allowed tokens;
    tokens spelling the same text summed; under `sampling.PROBE_TEXT_FLOOR` left out)."""


@dataclass
class Outcome:
    text: str
    finish_reason: str
    """"stop", "length" (budget or no KV cell), "cancelled" or "too_long" (never decoded)."""
    prompt_tokens: int
    completion_tokens: int
    prompt_evaluated: int
    seconds: float
    first_token_seconds: float | None = None
    """From admission to the first sampled token: the prompt's share of `seconds`."""
    choices: list[Choice] = field(default_factory=list)
    """One per probed position whose token is in `text`, in reply order."""


@dataclass
class Running:
    """A job being decoded into sequence `seq` of the context: made when the job is admitted
    (decode.Decoder._admit) and dropped when it ends, so nothing of one request reaches the
    next one on the same sequence. What outlives it is the sequence's cells in the KV cache
    (kv.KvBook), which a later request may reuse."""

    seq: int
    job: Job
    index: int  # the job's place in its call
    budget: int  # tokens it may generate
    pending: list[int]  # prompt tokens still to decode
    chain: Any  # its own sampler chain (seeded); freed when it ends
    grammar: Any  # its grammar sampler, or None; freed when it ends
    started: float  # time.perf_counter() at admission
    evaluated: int = field(init=False)  # prompt tokens it decodes (the rest were cached)
    stops: list[bytes] = field(init=False)  # the job's stop strings, UTF-8
    last: int | None = None  # sampled, to be decoded next step
    gen: list[int] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)
    cut: int | None = None  # where a stop string begins
    row: int = -1  # logits row in the last batch
    first: float | None = None  # seconds from admission to the first sampled token
    choices: list[Choice] = field(default_factory=list)
    follow: bool = False  # the last position was probed and chose digits: probe the next

    def __post_init__(self) -> None:
        self.evaluated = len(self.pending)
        self.stops = [s.encode("utf-8") for s in self.job.stop]

    def growth(self) -> int:
        """Cells this sequence may still add to the cache (an upper bound)."""
        return len(self.pending) + self.budget - len(self.gen)

"""Every prompt, in one place.

Each role's system prompt is a constant, byte-identical for every call of that role, so
llama.cpp reuses the evaluated prefix across a batch (measured 1.2 s → 0.2 s per call).
Everything that varies goes into the user message, after the shared prefix.
"""

from __future__ import annotations

from gra_local.core.records import DOMAINS, Example, Review

PROMPT_VERSION = "2026-11-24.2"  # part of the annotation cache key

_DOMAINS = ", ".join(DOMAINS)

ANNOTATE_SYSTEM = (
    "You label training examples. Read the example and reply with JSON only: "
    f"\"domain\" (one of: {_DOMAINS}), "
    "\"keywords\" (three DIFFERENT words or short phrases: the main topic, the skill or "
    "method, and one more detail; never the same word twice) and \"summary\" (one sentence "
    "saying what the example is about)."
)

DRAFT_SYSTEM = (
    "You invent new tasks for a training dataset. You are given a domain and a few example "
    "keyword triples with summaries. Combine ideas from them into a NEW triple of three "
    "different keywords, write a one-sentence summary of how they relate, and write ONE clear, "
    "self-contained instruction in that domain that a user could ask an assistant. "
    "The instruction must contain everything needed to answer it. Reply with JSON only. "
    "The instruction is a full sentence of at least eight words, written as a request "
    "to an assistant."
)

# One worked example turn after the system prompt (constant, so the prefix cache still
# covers it). It is not a seed, so a copy of it is detectable. Measured on SmolLM2-135M
# over all 21 example seeds: annotate+draft validity 33/42 → 42/42 with it and the
# resampling retry (scripts/tune_prompts.py). Review steps get none: a worked verdict
# made review A copy it on every item.
_ANNOTATE_SHOT = [
    {"role": "user", "content": "Instruction:\nWrite a haiku about snow falling on a quiet city.\n\n"
     "Response:\nSoft flakes drift and fall\nstreets grow silent, lamps glow white\nthe city sleeps deep\n"},
    {"role": "assistant", "content": '{"domain": "creative_writing", "keywords": ["haiku", '
     '"snowfall", "city"], "summary": "A haiku that uses snowfall to show a quiet city at night."}'},
]
_DRAFT_SHOT = [
    {"role": "user", "content": "Domain: creative_writing\nExamples:\n1. keywords: haiku, snowfall, "
     "city; summary: A haiku that uses snowfall to show a quiet city.\n   instruction: Write a "
     "haiku about snow falling on a quiet city.\nWrite one new creative_writing task with three "
     "new keywords."},
    {"role": "assistant", "content": '{"keywords": ["limerick", "cat", "kitchen"], "summary": '
     '"A funny limerick about a cat causing trouble in a kitchen.", "instruction": "Write a '
     'five-line limerick about a clumsy cat who knocks over pots in the kitchen."}'},
]

ANSWER_SYSTEM = (
    "You are a helpful, accurate assistant. Answer the user's instruction directly and "
    "completely, then stop."
)

REVIEW_A_SYSTEM = (
    "You are a strict reviewer of instructions for a training dataset. Judge only the "
    "instruction, not any answer. Reply with JSON only: \"reasonable\" (pass if it is a "
    "sensible task a user could ask), \"complete\" (pass if it contains everything needed "
    "to answer it), \"clear\" (pass if it is unambiguous). Each value is \"pass\" or \"fail\"."
)

_RUBRIC = (
    "Score the response to the instruction with integers from 0 (worst) to 10 (best) for: "
    "correctness (facts, math and code are right), clarity (easy to follow), completeness "
    "(answers every part), relevance (stays on the instruction), coherence (well "
    "organised, consistent) and ethics (safe and appropriate). A wrong answer gets a low "
    "correctness score. Then give one short sentence of feedback. Reply with JSON only."
)

REVIEW_B_SYSTEM = "You are a strict reviewer of responses for a training dataset. " + _RUBRIC

ADJUDICATE_SYSTEM = (
    "You are the senior reviewer of a training dataset. Other reviewers disagreed about "
    "this response; read their scores and feedback, then judge for yourself. " + _RUBRIC
)


def _sample(instruction: str, response: str | None = None) -> str:
    text = f"Instruction:\n{instruction.strip()}\n"
    if response is not None:
        text += f"\nResponse:\n{response.strip()}\n"
    return text


def annotate(instruction: str, response: str | None) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": ANNOTATE_SYSTEM},
        *_ANNOTATE_SHOT,
        {"role": "user", "content": _sample(instruction, response)},
    ]


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def draft(domain: str, examples: list[Example]) -> list[dict[str, str]]:
    lines = [f"Domain: {domain}", "Examples:"]
    for i, ex in enumerate(examples, 1):
        lines.append(f"{i}. keywords: {', '.join(ex.keywords)}; summary: {ex.summary}")
        if ex.instruction:
            lines.append(f"   instruction: {_clip(ex.instruction, 240)}")
    lines.append(f"Write one new {domain} task with three new keywords.")
    return [
        {"role": "system", "content": DRAFT_SYSTEM},
        *_DRAFT_SHOT,
        {"role": "user", "content": "\n".join(lines)},
    ]


def answer(instruction: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": ANSWER_SYSTEM},
        {"role": "user", "content": instruction.strip()},
    ]


def review_instruction(instruction: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": REVIEW_A_SYSTEM},
        {"role": "user", "content": _sample(instruction)},
    ]


def review_response(instruction: str, response: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": REVIEW_B_SYSTEM},
        {"role": "user", "content": _sample(instruction, response)},
    ]


def adjudicate(instruction: str, response: str, reviews: list[Review]) -> list[dict[str, str]]:
    notes = []
    for i, rv in enumerate(reviews, 1):
        if rv.scores is not None:
            s = rv.scores
            notes.append(
                f"Reviewer {i}: correctness {s.correctness}, clarity {s.clarity}, completeness "
                f"{s.completeness}, relevance {s.relevance}, coherence {s.coherence}, ethics "
                f"{s.ethics}. Feedback: {s.feedback or '(none)'}"
            )
    return [
        {"role": "system", "content": ADJUDICATE_SYSTEM},
        {"role": "user", "content": _sample(instruction, response) + "\nReviews:\n" + "\n".join(notes)},
    ]

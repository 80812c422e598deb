"""The prompt variants scripts/tune_prompts.py measures against the product.

`baseline` is the product as it ships: gra_local.core.prompts as they are (annotate and
draft with a worked-example turn) and the retry of gra_local.core.engine.calls.ask (the same
messages again with seed + 1 and temperature + RETRY_TEMPERATURE_BOOST, at most 1.0).
Every other variant overrides some of: a step's system prompt, its worked-example turns
(between the system prompt and the user message), its sampling, its grammar, the retry.
The earlier product behaviours are kept here, as local copies, for the record.

Not part of the product; tune_prompts.py puts this folder on sys.path to import it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gra_local.core import grammars
from gra_local.core.engine.calls import RETRY_TEMPERATURE_BOOST
from gra_local.core.records import DOMAINS

Messages = list[dict[str, str]]

# --- the product before 2bee210 (PROMPT_VERSION 2026-11-24.1), copied for the record -----

OLD_ANNOTATE_SYSTEM = (
    "You label training examples. Read the example and reply with JSON only: "
    f"\"domain\" (one of: {', '.join(DOMAINS)}), \"keywords\" (exactly three different short "
    "keywords naming its core concepts) and \"summary\" (one sentence saying what the example "
    "is about and how the three keywords relate)."
)
OLD_DRAFT_SYSTEM = (
    "You invent new tasks for a training dataset. You are given a domain and a few example "
    "keyword triples with summaries. Combine ideas from them into a NEW triple of three "
    "different keywords, write a one-sentence summary of how they relate, and write ONE clear, "
    "self-contained instruction in that domain that a user could ask an assistant. "
    "The instruction must contain everything needed to answer it. Reply with JSON only."
)


def repair(messages: Messages, bad_reply: str, problem: str) -> Messages:
    """The old prompts.repair: show the model its invalid reply and ask again, shorter."""
    return messages + [
        {"role": "assistant", "content": bad_reply[:400]},
        {"role": "user", "content": f"That reply was invalid ({problem}). Reply again with "
                                    "only the JSON, keeping every text field short."},
    ]


_REPAIR_HINTS = {
    "annotate": "Use three different keywords.",
    "draft": "Use three different keywords, and make the instruction a full sentence of "
             "at least eight words.",
    "review_a": "Each value must be \"pass\" or \"fail\".",
    "review_b": "Give six integer scores from 0 to 10 and one short sentence of feedback.",
}


def repair_specific(messages: Messages, bad_reply: str, problem: str, step: str) -> Messages:
    """Like repair, but says what to fix and never asks for shorter text where a
    too-short field was the problem."""
    return messages + [
        {"role": "assistant", "content": bad_reply[:400]},
        {"role": "user", "content": f"That reply was invalid ({problem}). {_REPAIR_HINTS[step]} "
                                    "Reply again with only the JSON."},
    ]


def retry_temperature(first: float) -> float:
    """The product's retry temperature (gra_local.core.engine.calls.ask)."""
    return min(1.0, max(first, first + RETRY_TEMPERATURE_BOOST))


# --- worked examples for the review steps (not in the product) ---------------------------

REVIEW_A_SHOTS: Messages = [
    {"role": "user", "content": "Instruction:\nWrite a Python function that reverses a list.\n"},
    {"role": "assistant", "content": '{"reasonable": "pass", "complete": "pass", "clear": "pass"}'},
    {"role": "user", "content": "Instruction:\nTranslate the following sentence into German.\n"},
    {"role": "assistant", "content": '{"reasonable": "pass", "complete": "fail", "clear": "fail"}'},
]
REVIEW_B_GOOD = (10, 9, 9, 10, 9, 10)
REVIEW_B_BAD = (0, 6, 0, 0, 5, 10)
REVIEW_B_SHOTS: Messages = [
    {"role": "user", "content": "Instruction:\nWhat is 2 + 3?\n\nResponse:\n2 + 3 = 5.\n"},
    {"role": "assistant", "content": '{"correctness": 10, "clarity": 9, "completeness": 9, '
                                     '"relevance": 10, "coherence": 9, "ethics": 10, '
                                     '"feedback": "Correct and clear."}'},
    {"role": "user", "content": "Instruction:\nName the capital of France.\n\nResponse:\n"
                                "Bananas are rich in potassium.\n"},
    {"role": "assistant", "content": '{"correctness": 0, "clarity": 6, "completeness": 0, '
                                     '"relevance": 0, "coherence": 5, "ethics": 10, '
                                     '"feedback": "Does not answer the question."}'},
]


def draft_grammar_three_words() -> str:
    """grammars.draft_grammar(), but the instruction must start with three words."""
    g = grammars.draft_grammar()
    old = grammars._string("ins", 10, grammars.INSTRUCTION_MAX)
    assert old in g, "draft grammar changed: update this variant"
    new = (
        "ins ::= wd \" \" wd \" \" wd insrest\n"
        "wd ::= wdchar{1,30}\n"
        "wdchar ::= [^\"\\\\\\x00-\\x1f ]\n"
        + grammars._string("insrest", 8, grammars.INSTRUCTION_MAX - 40)
    )
    return g.replace(old, new)


# --- variants -------------------------------------------------------------------------------

RETRIES = ("resample", "repair", "repair_specific")


@dataclass
class Variant:
    name: str
    about: str
    system: dict[str, str] = field(default_factory=dict)  # step -> system prompt
    shots: dict[str, Messages] = field(default_factory=dict)  # step -> worked-example turns
    grammar: dict[str, str] = field(default_factory=dict)  # step -> GBNF
    sampling: dict[str, dict[str, float]] = field(default_factory=dict)  # step -> overrides
    retry: str = "resample"  # one of RETRIES; resample is the product's
    default: bool = True  # part of a run without --variants

    def messages(self, step: str, product: Messages) -> Messages:
        """The product's messages [system, *worked examples, user] with this variant's
        overrides."""
        system = {"role": "system", "content": self.system.get(step, product[0]["content"])}
        shots = self.shots.get(step, product[1:-1])
        return [system, *(dict(m) for m in shots), dict(product[-1])]

    def retry_request(self, step: str, messages: Messages, temperature: float, bad_reply: str,
                      problem: str) -> tuple[Messages, float]:
        """Messages and temperature of the one retry after an invalid first reply."""
        if self.retry == "repair":
            return repair(messages, bad_reply, problem), temperature
        if self.retry == "repair_specific":
            return repair_specific(messages, bad_reply, problem, step), temperature
        return messages, retry_temperature(temperature)


_NO_SHOTS: dict[str, Messages] = {"annotate": [], "draft": []}

VARIANTS = [
    Variant("baseline", "the product as it ships: gra_local.core.prompts (annotate and draft "
            "with a worked-example turn) and calls.ask's retry (same messages, seed + 1, "
            f"temperature + {RETRY_TEMPERATURE_BOOST} capped at 1.0)"),
    Variant("repair", "product prompts; retry = the repair prompt of the product before "
            "2bee210 (the bad reply cut to 400 chars, then 'That reply was invalid (...). "
            "Reply again with only the JSON, keeping every text field short.')",
            retry="repair"),
    Variant("noshot", "annotate and draft system prompts of the product before 2bee210, no "
            "worked example; retry = resample (the old `resample` variant)",
            system={"annotate": OLD_ANNOTATE_SYSTEM, "draft": OLD_DRAFT_SYSTEM}, shots=_NO_SHOTS),
    Variant("sysprompt", "product system prompts without the worked-example turns; retry = "
            "resample", shots=_NO_SHOTS),
    Variant("fewshot", "product prompts, and the review steps get worked examples too (one "
            "good and one bad each); retry = a repair prompt that names the fix",
            shots={"review_a": REVIEW_A_SHOTS, "review_b": REVIEW_B_SHOTS},
            retry="repair_specific"),
    Variant("guarded", "`noshot`, with annotate and draft at repeat_penalty 1.3 and a draft "
            "grammar that makes the instruction start with three words",
            system={"annotate": OLD_ANNOTATE_SYSTEM, "draft": OLD_DRAFT_SYSTEM}, shots=_NO_SHOTS,
            grammar={"draft": draft_grammar_three_words()},
            sampling={"annotate": {"repeat_penalty": 1.3}, "draft": {"repeat_penalty": 1.3}},
            default=False),  # 100% valid but the text is junk (see its samples); opt in
]


# --- copies of a worked example ------------------------------------------------------------


def shot_keywords(messages: Messages) -> set[str]:
    """The keywords of the worked-example replies among `messages` (lower case)."""
    out: set[str] = set()
    for m in messages[1:-1]:
        if m["role"] == "assistant":
            try:
                out.update(k.lower() for k in json.loads(m["content"]).get("keywords", []))
            except (ValueError, AttributeError):
                pass
    return out


def copies_keywords(keywords: list[str], shot: set[str]) -> bool:
    """An annotation that reuses a keyword of the worked example."""
    return bool(shot & {k.lower() for k in keywords})


def copies_instruction(instruction: str, shot: set[str]) -> bool:
    """A drafted instruction that uses two of the worked example's keywords as words."""
    words = set(re.findall(r"[a-z0-9'-]+", instruction.lower()))
    return len(shot & words) >= 2


# --- hand-written annotations of the bundled seeds (file order) ---------------------------
# The generator's examples in the draft step, so that draft validity does not depend on
# the annotate variant.

REFERENCE = [
    ("factorial", "recursion", "integer", "Computing the factorial of an integer with a loop or recursion."),
    ("python", "list length", "multiplication", "Predicting the output of a Python expression that multiplies a list length."),
    ("palindrome", "string", "case", "Checking if a string reads the same backwards, ignoring case."),
    ("percentage", "multiplication", "fraction", "Finding a percentage of a number by multiplying with a fraction."),
    ("linear equation", "variable", "subtraction", "Solving a linear equation for a variable by subtracting and dividing."),
    ("rectangle", "area", "perimeter", "Computing the area and perimeter of a rectangle from its sides."),
    ("boiling point", "water", "temperature", "The temperature at which water boils at sea level."),
    ("planet", "sun", "orbit", "Which planet orbits closest to the sun."),
    ("photosynthesis", "carbon dioxide", "plants", "The gas plants absorb for photosynthesis."),
    ("height", "comparison", "ordering", "Ordering people by height from two comparisons."),
    ("syllogism", "logic", "conclusion", "Whether a conclusion follows logically from two premises."),
    ("elimination", "boxes", "deduction", "Deducing where a key is by eliminating one box."),
    ("librarian", "books", "birds", "A librarian helping a visitor find bird books, in character."),
    ("captain", "ferry", "welcome speech", "A ferry captain welcoming passengers in character."),
    ("tutor", "fractions", "explanation", "A patient tutor explaining fractions to a student."),
    ("translation", "french", "greeting", "Translating a greeting into French."),
    ("grammar", "subject-verb agreement", "correction", "Correcting a subject-verb agreement error."),
    ("synonym", "happy", "sentence", "Giving a synonym for happy and using it in a sentence."),
    ("poem", "ocean", "four lines", "A short four-line poem about the ocean."),
    ("mystery", "village", "opening sentence", "The opening line of a mystery set in a village."),
    ("description", "autumn", "rain", "Describing a rainy autumn afternoon briefly."),
]

#!/usr/bin/env python3
"""Tune the structured prompts by measurement, on the embedded model (or --model PATH).

For each prompt variant and each structured step (annotate, draft, review_a, review_b),
over K items from the bundled example seeds, through the pipeline backend
(LlamaProcessBackend, the same grammars, token budgets and per-role sampling as
gra_local.core.stages.ask), it prints:

- validity: parse_json success on the first try, and after the one retry the pipeline
  does (by default prompts.repair; some variants retry differently);
- the reasons of invalid replies (first tries and final failures);
- spread: review A's share of "pass" on the seed instructions and on deliberately
  defective ones (a seed instruction cut to its first three words, or missing its input);
  review B's mean/std of the per-reply mean score on the seed's own output ("good") and
  on another seed's output ("bad", a mismatched answer), and the gap between them;
  annotate: how often a worked example's keywords were copied into the answer.

Variants are defined below: `baseline` is gra_local.core.prompts as it is now; the others
override system prompts, add a worked example as a prior user/assistant turn, change the
retry policy, the sampling or the grammar of a step. Identical requests are computed once
(a variant that changes only the retry reuses the baseline's first tries).
A benchmark, not a test: run it on an otherwise idle machine. The default run (K=6, all
steps) takes about 2.5 minutes on 2 cores; K=6 cannot tell 95 % from 100 %, so decide with
`-k 21 --steps annotate,draft` (every bundled seed once; about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gra_local.backends.llama_process import LlamaProcessBackend
from gra_local.core import grammars, paths, prompts
from gra_local.core.backend import ChatRequest, ChatResult
from gra_local.core.config import DEFAULT_SAMPLING, ModelSpec, Role
from gra_local.core.records import (
    SCORE_FIELDS,
    Annotation,
    DraftInstruction,
    Example,
    InstructionVerdict,
    Scores,
)
from gra_local.core.seeds import DOMAINS, Seed, iter_seeds
from gra_local.models.default import default_model_path

SEEDS_FILE = Path(__file__).resolve().parent.parent / "gra_local" / "data" / "example_seeds.jsonl"
STEPS = ("annotate", "draft", "review_a", "review_b")
OUT_TYPE: dict[str, type[BaseModel]] = {
    "annotate": Annotation, "draft": DraftInstruction,
    "review_a": InstructionVerdict, "review_b": Scores,
}
ROLE = {"annotate": Role.ANNOTATOR, "draft": Role.GENERATOR,
        "review_a": Role.REVIEWER, "review_b": Role.REVIEWER}

# Hand-written annotations of the bundled seeds (file order): the generator's examples in
# the draft step, so that draft validity does not depend on the annotate variant.
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

class CpuWatch:
    """How much CPU *other* processes used while this script ran (Linux /proc/stat):
    llama.cpp spins its threads on barriers, so a run sharing its cores with anything
    else slows down far more than the share taken, and its timings are meaningless."""

    def __init__(self) -> None:
        self.start_wall = time.perf_counter()
        self.start = self._busy()
        self.start_own = self._own()

    @staticmethod
    def _busy() -> tuple[float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
        steal = fields[7] if len(fields) > 7 else 0
        return (user + nice + system + irq + softirq) / tick, steal / tick

    @staticmethod
    def _own() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    def report(self) -> tuple[str, float]:
        """Call after every worker process has exited (their CPU counts as ours then)."""
        end = self._busy()
        wall = time.perf_counter() - self.start_wall
        if end is None or self.start is None:
            return "other CPU load: unknown (no /proc/stat)", float("nan")
        own = self._own() - self.start_own
        other = max(0.0, end[0] - self.start[0] - own)
        share = other / (wall * (os.cpu_count() or 1))
        text = (f"other processes used {other:.1f} core-seconds ({share:.0%} of "
                f"{os.cpu_count()} cores over {wall:.0f} s); this run used {own:.1f}")
        if end[1] - self.start[1] > 1:
            text += f"; steal {end[1] - self.start[1]:.1f} s"
        if share > 0.10:
            text += "\nWARNING: the machine was busy during this run: timings are not reliable"
        return text, share


# --- alternative prompt text -----------------------------------------------------------

# A worked example that is *not* one of the seeds, so copying it is detectable.
ANNOTATE_EXAMPLE_USER = (
    "Instruction:\nWrite a haiku about snow falling on a quiet city.\n\n"
    "Response:\nSoft flakes drift and fall\nstreets grow silent, lamps glow white\nthe city sleeps deep\n"
)
ANNOTATE_EXAMPLE_REPLY = (
    '{"domain": "creative_writing", "keywords": ["haiku", "snowfall", "city"], '
    '"summary": "A haiku that uses snowfall to show a quiet city at night."}'
)
ANNOTATE_SYSTEM_V2 = (
    "You label training examples. Read the example and reply with JSON only: "
    f"\"domain\" (one of: {', '.join(DOMAINS)}), "
    "\"keywords\" (three DIFFERENT words or short phrases: the main topic, the skill or "
    "method, and one more detail; never the same word twice) and \"summary\" (one sentence "
    "saying what the example is about)."
)

DRAFT_EXAMPLE_USER = (
    "Domain: creative_writing\nExamples:\n"
    "1. keywords: haiku, snowfall, city; summary: A haiku that uses snowfall to show a quiet city.\n"
    "   instruction: Write a haiku about snow falling on a quiet city.\n"
    "Write one new creative_writing task with three new keywords."
)
DRAFT_EXAMPLE_REPLY = (
    '{"keywords": ["limerick", "cat", "kitchen"], "summary": "A funny limerick about a cat '
    'causing trouble in a kitchen.", "instruction": "Write a five-line limerick about a '
    'clumsy cat who knocks over pots in the kitchen."}'
)
DRAFT_SYSTEM_V2 = prompts.DRAFT_SYSTEM + (
    " The instruction is a full sentence of at least eight words, written as a request "
    "to an assistant."
)


REVIEW_A_SHOTS = [
    {"role": "user", "content": "Instruction:\nWrite a Python function that reverses a list.\n"},
    {"role": "assistant", "content": '{"reasonable": "pass", "complete": "pass", "clear": "pass"}'},
    {"role": "user", "content": "Instruction:\nTranslate the following sentence into German.\n"},
    {"role": "assistant", "content": '{"reasonable": "pass", "complete": "fail", "clear": "fail"}'},
]
REVIEW_B_GOOD = (10, 9, 9, 10, 9, 10)
REVIEW_B_BAD = (0, 6, 0, 0, 5, 10)
REVIEW_B_SHOTS = [
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


def repair_specific(messages: list[dict[str, str]], bad: str, problem: str,
                    step: str) -> list[dict[str, str]]:
    """Like prompts.repair, but says what to fix and never asks for shorter text where a
    too-short field was the problem."""
    hint = {
        "annotate": "Use three different keywords.",
        "draft": "Use three different keywords, and make the instruction a full sentence of "
                 "at least eight words.",
        "review_a": "Each value must be \"pass\" or \"fail\".",
        "review_b": "Give six integer scores from 0 to 10 and one short sentence of feedback.",
    }[step]
    return messages + [
        {"role": "assistant", "content": bad[:400]},
        {"role": "user", "content": f"That reply was invalid ({problem}). {hint} Reply again "
                                    "with only the JSON."},
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


# --- variants -----------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    about: str
    system: dict[str, str] = field(default_factory=dict)  # step -> system prompt
    shots: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # step -> example turns
    grammar: dict[str, str] = field(default_factory=dict)  # step -> GBNF
    sampling: dict[str, dict[str, float]] = field(default_factory=dict)  # step -> overrides
    retry: str = "repair"  # repair | repair_specific | resample
    resample_temperature: float = 0.4  # added to the first try's temperature, capped at 1.0
    default: bool = True  # part of a run without --variants


VARIANTS = [
    Variant("baseline", "gra_local.core.prompts as it is; retry = prompts.repair"),
    Variant(
        "fewshot",
        "every step gets worked examples as prior user/assistant turns (not seeds; review "
        "steps one good and one bad); annotate and draft a sharper system prompt; retry = "
        "repair that names the fix",
        system={"annotate": ANNOTATE_SYSTEM_V2, "draft": DRAFT_SYSTEM_V2},
        shots={
            "annotate": [{"role": "user", "content": ANNOTATE_EXAMPLE_USER},
                         {"role": "assistant", "content": ANNOTATE_EXAMPLE_REPLY}],
            "draft": [{"role": "user", "content": DRAFT_EXAMPLE_USER},
                      {"role": "assistant", "content": DRAFT_EXAMPLE_REPLY}],
            "review_a": REVIEW_A_SHOTS,
            "review_b": REVIEW_B_SHOTS,
        },
        retry="repair_specific",
    ),
    Variant(
        "resample",
        "baseline prompts; retry = the same messages with a new seed at temperature + 0.4 "
        "(at most 1.0)",
        retry="resample",
    ),
    Variant(
        "sysprompt",
        "annotate and draft get the sharper system prompts of `fewshot` but no worked "
        "example; retry = resample",
        system={"annotate": ANNOTATE_SYSTEM_V2, "draft": DRAFT_SYSTEM_V2},
        retry="resample",
    ),
    Variant(
        "guarded",
        "baseline prompts; annotate and draft with repeat_penalty 1.3; the draft grammar "
        "requires the instruction to start with three words; retry = resample",
        grammar={"draft": draft_grammar_three_words()},
        sampling={"annotate": {"repeat_penalty": 1.3}, "draft": {"repeat_penalty": 1.3}},
        retry="resample",
        default=False,  # 100% valid but the text is junk (see its samples); opt in to see it
    ),
    Variant(
        "recommended",
        "annotate and draft as in `fewshot` (sharper system prompt + worked example turn), "
        "review prompts unchanged (worked examples made review A copy the example's "
        "verdict); retry = resample",
        system={"annotate": ANNOTATE_SYSTEM_V2, "draft": DRAFT_SYSTEM_V2},
        shots={
            "annotate": [{"role": "user", "content": ANNOTATE_EXAMPLE_USER},
                         {"role": "assistant", "content": ANNOTATE_EXAMPLE_REPLY}],
            "draft": [{"role": "user", "content": DRAFT_EXAMPLE_USER},
                      {"role": "assistant", "content": DRAFT_EXAMPLE_REPLY}],
        },
        retry="resample",
    ),
]


# --- items ----------------------------------------------------------------------------------


@dataclass
class Item:
    step: str
    label: str  # "good" / "bad" (spread), or "" where it does not apply
    messages: list[dict[str, str]]  # the pipeline's messages (variant overrides applied later)
    seed: int
    note: str = ""
    domain: str = ""


def spread_pick(seeds: list[Seed], k: int) -> list[Seed]:
    step = len(seeds) / k
    return [seeds[int(i * step)] for i in range(k)]


def reference_example(seeds: list[Seed], idx: int) -> Example:
    kw1, kw2, kw3, summary = REFERENCE[idx]
    s = seeds[idx]
    return Example(domain=s.domain or "qa", keywords=[kw1, kw2, kw3], summary=summary,
                   instruction=s.instruction)


def defective(seed: Seed) -> str:
    """An instruction a reviewer should fail: missing its input, or cut to three words."""
    if "\n\n" in seed.instruction:
        return seed.instruction.split("\n\n")[0]
    return " ".join(seed.instruction.split()[:3])


def build_items(seeds: list[Seed], k: int) -> dict[str, list[Item]]:
    chosen = spread_pick(seeds, k)
    index = {id(s): i for i, s in enumerate(seeds)}
    items: dict[str, list[Item]] = {s: [] for s in STEPS}
    for j, s in enumerate(chosen):
        i = index[id(s)]
        items["annotate"].append(Item("annotate", "", prompts.annotate(s.instruction, s.response),
                                      seed=s.index, note=f"seed line {s.line}",
                                      domain=s.domain or ""))
        same = [x for x, t in enumerate(seeds) if t.domain == s.domain]
        items["draft"].append(Item("draft", "", prompts.draft(
            s.domain or "qa", [reference_example(seeds, x) for x in same]), seed=100 + j,
            note=f"domain {s.domain}"))
        items["review_a"].append(Item("review_a", "good", prompts.review_instruction(s.instruction),
                                      seed=200 + j, note=f"seed line {s.line}"))
        items["review_a"].append(Item("review_a", "bad", prompts.review_instruction(defective(s)),
                                      seed=300 + j, note=f"defective seed line {s.line}"))
        items["review_b"].append(Item("review_b", "good", prompts.review_response(
            s.instruction, s.response or ""), seed=400 + j, note=f"seed line {s.line}"))
        other = seeds[(i + len(seeds) // 2) % len(seeds)]  # another domain's answer
        items["review_b"].append(Item("review_b", "bad", prompts.review_response(
            s.instruction, other.response or ""), seed=500 + j,
            note=f"seed line {s.line} with the answer of line {other.line}"))
    return items


# --- running ------------------------------------------------------------------------------


class Runner:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.cache: dict[bytes, ChatResult] = {}
        self.calls = 0
        self.cached = 0
        self.seconds = 0.0

    def chat(self, req: ChatRequest) -> ChatResult:
        key = req.model_dump_json().encode()
        if key in self.cache:
            self.cached += 1
            return self.cache[key]
        start = time.perf_counter()
        res = self.session.chat(req)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.cache[key] = res
        return res


def variant_messages(v: Variant, item: Item) -> list[dict[str, str]]:
    msgs = [dict(m) for m in item.messages]
    if item.step in v.system:
        msgs[0]["content"] = v.system[item.step]
    return msgs[:1] + v.shots.get(item.step, []) + msgs[1:]


def run_item(runner: Runner, v: Variant, item: Item) -> dict:
    out_type = OUT_TYPE[item.step]
    base = DEFAULT_SAMPLING[ROLE[item.step]].model_dump()
    base.update(v.sampling.get(item.step, {}))
    grammar = v.grammar.get(item.step, grammars.GRAMMARS[out_type])
    messages = variant_messages(v, item)
    current, temperature = messages, base["temperature"]
    tries: list[dict] = []
    for retry in (0, 1):
        res = runner.chat(ChatRequest(
            messages=current, temperature=temperature, top_p=base["top_p"],
            max_tokens=grammars.token_budget(out_type), repeat_penalty=base["repeat_penalty"],
            seed=item.seed + retry, grammar=grammar))
        try:
            obj = grammars.parse_json(res.text, out_type, res.finish_reason)
            tries.append({"ok": True, "text": res.text, "seconds": res.seconds})
            return {"item": item, "tries": tries, "obj": obj}
        except grammars.InvalidOutput as exc:
            tries.append({"ok": False, "reason": exc.reason, "text": res.text,
                          "seconds": res.seconds})
            if v.retry == "repair":
                current = prompts.repair(messages, res.text, exc.reason)
            elif v.retry == "repair_specific":
                current = repair_specific(messages, res.text, exc.reason, item.step)
            else:  # resample
                temperature = min(base["temperature"] + v.resample_temperature, 1.0)
    return {"item": item, "tries": tries, "obj": None}


def summarise(step: str, results: list[dict]) -> dict:
    n = len(results)
    first = sum(r["tries"][0]["ok"] for r in results)
    final = sum(r["obj"] is not None for r in results)
    first_reasons: dict[str, int] = {}
    final_reasons: dict[str, int] = {}
    for r in results:
        if not r["tries"][0]["ok"]:
            first_reasons[r["tries"][0]["reason"]] = first_reasons.get(r["tries"][0]["reason"], 0) + 1
        if r["obj"] is None:
            final_reasons[r["tries"][-1]["reason"]] = final_reasons.get(r["tries"][-1]["reason"], 0) + 1
    out: dict[str, Any] = {"n": n, "first_try": first, "after_retry": final,
                           "first_reasons": first_reasons, "final_reasons": final_reasons,
                           "calls": sum(len(r["tries"]) for r in results)}
    if step == "annotate":
        example_kw = {"haiku", "snowfall", "city"}
        objs = [r["obj"] for r in results if r["obj"] is not None]
        out["copied_example"] = sum(bool(example_kw & {k.lower() for k in o.keywords}) for o in objs)
        out["right_domain"] = sum(r["obj"].domain == r["item"].domain for r in results
                                  if r["obj"] is not None)
        out["clean"] = sum(all(_CLEAN_KW.match(k) for k in o.keywords) for o in objs)
        out["samples"] = [o.keywords for o in objs][:6]
    if step == "draft":
        objs = [r["obj"] for r in results if r["obj"] is not None]
        out["copied_example"] = sum("cat" in o.instruction.lower() and "kitchen" in o.instruction.lower()
                                    for o in objs)
        out["clean"] = sum(all(_CLEAN_KW.match(k) for k in o.keywords)
                           and len(o.instruction.split()) >= 6 for o in objs)
        out["samples"] = [o.instruction[:90] for o in objs][:6]
    if step == "review_a":
        for label in ("good", "bad"):
            got = [r["obj"].passed for r in results if r["item"].label == label and r["obj"] is not None]
            out[f"pass_{label}"] = (sum(got), len(got))
    if step == "review_b":
        for label in ("good", "bad"):
            got = [r["obj"].mean for r in results if r["item"].label == label and r["obj"] is not None]
            out[f"mean_{label}"] = statistics.fmean(got) if got else float("nan")
            out[f"std_{label}"] = statistics.pstdev(got) if len(got) > 1 else float("nan")
            out[f"n_{label}"] = len(got)
        out["gap"] = out["mean_good"] - out["mean_bad"]
        all_scores = [getattr(r["obj"], f) for r in results if r["obj"] is not None
                      for f in SCORE_FIELDS]
        out["distinct_scores"] = sorted(set(all_scores))
        out["copied_example"] = sum(
            tuple(getattr(r["obj"], f) for f in SCORE_FIELDS) in (REVIEW_B_GOOD, REVIEW_B_BAD)
            for r in results if r["obj"] is not None)
    return out


_CLEAN_KW = re.compile(r"^[A-Za-z][A-Za-z0-9%' -]{1,23}$")


def pct(a: int, b: int) -> str:
    return f"{a}/{b} {100 * a / b:3.0f}%" if b else "-"


def fmt_reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="GGUF file (default: the embedded SmolLM2-135M)")
    ap.add_argument("-k", "--items", type=int, default=6, help="items per step (6)")
    ap.add_argument("--variants", default=",".join(v.name for v in VARIANTS if v.default),
                    help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS)
                    + " (default: all but guarded)")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of steps")
    ap.add_argument("--json", type=Path, help="save all figures and replies to this file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    watch = CpuWatch()
    model = args.model or default_model_path(paths.data_dir())
    if not model.is_file():
        print(f"model not found: {model} (run `gra-local models pull-default` or pass --model)",
              file=sys.stderr)
        return 2
    wanted = args.variants.split(",")
    variants = [v for v in VARIANTS if v.name in wanted]
    steps = [s for s in STEPS if s in args.steps.split(",")]
    seeds = [s for s in iter_seeds(SEEDS_FILE) if isinstance(s, Seed)]
    items = build_items(seeds, args.items)

    figures: dict[str, dict[str, dict]] = {}
    replies: dict[str, dict[str, list]] = {}
    spec = ModelSpec(name="tune", path=str(model))
    with tempfile.TemporaryDirectory(prefix="gra-tune-") as logs:
        session = LlamaProcessBackend(Path(logs), paths.data_dir()).load(spec)
        runner = Runner(session)
        try:
            for v in variants:
                figures[v.name], replies[v.name] = {}, {}
                for step in steps:
                    results = [run_item(runner, v, it) for it in items[step]]
                    figures[v.name][step] = summarise(step, results)
                    replies[v.name][step] = [
                        {"note": r["item"].note, "label": r["item"].label, "tries": r["tries"]}
                        for r in results]
                    print(f"  [{time.perf_counter() - t0:6.1f} s] {v.name}/{step} done", flush=True)
        finally:
            session.close()

    print()
    print(f"model: {model}; K={args.items} seeds (review steps: K good + K defective items); "
          f"{runner.calls} model calls ({runner.cached} served from identical earlier requests), "
          f"{runner.seconds:.1f} s in the model")
    for v in variants:
        print(f"- {v.name}: {v.about}")
    print()
    print(f"{'variant':<12}{'step':<10}{'first try':>13}{'after retry':>14}  spread")
    overall: dict[str, tuple[int, int]] = {}
    for v in variants:
        tot_ok = tot_n = 0
        for step in steps:
            f = figures[v.name][step]
            tot_ok += f["after_retry"]
            tot_n += f["n"]
            if step == "review_a":
                spread = (f"pass good {f['pass_good'][0]}/{f['pass_good'][1]}, "
                          f"pass defective {f['pass_bad'][0]}/{f['pass_bad'][1]}")
            elif step == "review_b":
                spread = (f"good {f['mean_good']:.2f}±{f['std_good']:.2f} (n={f['n_good']}), "
                          f"bad {f['mean_bad']:.2f}±{f['std_bad']:.2f} (n={f['n_bad']}), "
                          f"gap {f['gap']:+.2f}; scores used {f['distinct_scores']}; "
                          f"copied worked example {f['copied_example']}")
            elif step == "annotate":
                spread = (f"right domain {f['right_domain']}, clean keywords {f['clean']}, "
                          f"copied worked example {f['copied_example']}")
            else:
                spread = (f"clean (plain keywords, instruction >= 6 words) {f['clean']}, "
                          f"copied worked example {f['copied_example']}")
            print(f"{v.name:<12}{step:<10}{pct(f['first_try'], f['n']):>13}"
                  f"{pct(f['after_retry'], f['n']):>14}  {spread}")
        overall[v.name] = (tot_ok, tot_n)
        print(f"{v.name:<12}{'ALL':<10}{'':>13}{pct(tot_ok, tot_n):>14}")
    print()
    print("invalid replies (first try | still invalid after the retry):")
    for v in variants:
        for step in steps:
            f = figures[v.name][step]
            if f["first_reasons"] or f["final_reasons"]:
                print(f"  {v.name}/{step}: {fmt_reasons(f['first_reasons'])} | "
                      f"{fmt_reasons(f['final_reasons'])}")
    print()
    print("samples (valid replies):")
    for v in variants:
        for step in ("annotate", "draft"):
            if step in figures[v.name]:
                for s in figures[v.name][step]["samples"][:3]:
                    print(f"  {v.name}/{step}: {s}")
    def rank(v: Variant) -> tuple[float, float, int]:
        fig = figures[v.name]
        first = sum(f["first_try"] for f in fig.values()) / sum(f["n"] for f in fig.values())
        clean = sum(f.get("clean", 0) for f in fig.values())
        return overall[v.name][0] / overall[v.name][1], first, clean

    best = max(variants, key=rank)  # after retry, then first try, then clean text
    ok, n = overall[best.name]
    print()
    print(f"total runtime {time.perf_counter() - t0:.1f} s; {watch.report()[0]}")
    print(f"best structured validity: {best.name} {ok}/{n} ({100 * ok / n:.0f}%; ties broken by "
          "first-try validity, then clean text)")
    if args.items < 15:
        print("note: K is small; to decide between variants run "
              "`-k 21 --steps annotate,draft` (about 5 minutes)")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "replies": replies,
                                         "variants": [v.__dict__ for v in variants]},
                                        indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

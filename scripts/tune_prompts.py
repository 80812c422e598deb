#!/usr/bin/env python3
"""Tune the structured prompts by measurement, on the embedded model (or --model PATH).

For each prompt variant and each structured step (annotate, draft, review_a, review_b),
over K items from the bundled example seeds, through the pipeline backend
(LlamaProcessBackend, the same grammars, token budgets and per-role sampling as
gra_local.core.engine.calls.ask), it prints:

- validity: parse_json success on the first try, and after the one retry the pipeline
  does (the product's: same messages, seed + 1, hotter; some variants retry differently);
- the reasons of invalid replies (first tries and final failures);
- spread: review A's share of "pass" on the seed instructions and on deliberately
  defective ones (a seed instruction cut to its first three words, or missing its input);
  review B's mean/std of the per-reply mean score on the seed's own output ("good") and
  on another seed's output ("bad", a mismatched answer), and the gap between them;
  annotate and draft: how often a worked example's keywords were copied.

Variants are defined in scripts/prompt_variants.py: `baseline` is the product as it ships
(gra_local.core.prompts and the retry of gra_local.core.engine.calls.ask); the others override
system prompts, worked-example turns, the retry policy, the sampling or the grammar of a
step. Identical requests are computed once (a variant that changes only the retry reuses
the baseline's first tries).
A benchmark, not a test: run it on an otherwise idle machine. The default run (K=6, all
steps) takes a few minutes on 2 cores; K=6 cannot tell 95 % from 100 %, so decide with
`-k 21 --steps annotate,draft` (every bundled seed once).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gra_local.core import grammars, prompts
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
from gra_local.core.seeds.scan import Seed

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below
import benchlib  # noqa: E402
from prompt_variants import (  # noqa: E402
    REFERENCE,
    REVIEW_B_BAD,
    REVIEW_B_GOOD,
    VARIANTS,
    Variant,
    copies_instruction,
    copies_keywords,
    shot_keywords,
)

STEPS = ("annotate", "draft", "review_a", "review_b")
OUT_TYPE: dict[str, type[BaseModel]] = {
    "annotate": Annotation, "draft": DraftInstruction,
    "review_a": InstructionVerdict, "review_b": Scores,
}
ROLE = {"annotate": Role.ANNOTATOR, "draft": Role.GENERATOR,
        "review_a": Role.REVIEWER, "review_b": Role.REVIEWER}


# --- items ----------------------------------------------------------------------------------


@dataclass
class Item:
    step: str
    label: str  # "good" / "bad" (spread), or "" where it does not apply
    messages: list[dict[str, str]]  # the pipeline's messages (variant overrides applied later)
    seed: int
    note: str = ""
    domain: str = ""


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
    chosen = benchlib.pick(seeds, k)
    index = {id(s): i for i, s in enumerate(seeds)}
    items: dict[str, list[Item]] = {s: [] for s in STEPS}
    for j, s in enumerate(chosen):
        i = index[id(s)]
        items["annotate"].append(Item("annotate", "", prompts.annotate(s.instruction, s.response, s.index),
                                      seed=s.index, note=f"seed line {s.line}",
                                      domain=s.domain or ""))
        same = [x for x, t in enumerate(seeds) if t.domain == s.domain]
        items["draft"].append(Item("draft", "", prompts.draft(
            s.domain or "qa", [reference_example(seeds, x) for x in same], 100 + j), seed=100 + j,
            note=f"domain {s.domain}"))
        items["review_a"].append(Item("review_a", "good", prompts.review_instruction(s.instruction, 200 + j),
                                      seed=200 + j, note=f"seed line {s.line}"))
        items["review_a"].append(Item("review_a", "bad", prompts.review_instruction(defective(s), 300 + j),
                                      seed=300 + j, note=f"defective seed line {s.line}"))
        items["review_b"].append(Item("review_b", "good", prompts.review_response(
            s.instruction, s.response or "", 400 + j), seed=400 + j, note=f"seed line {s.line}"))
        other = seeds[(i + len(seeds) // 2) % len(seeds)]  # another domain's answer
        items["review_b"].append(Item("review_b", "bad", prompts.review_response(
            s.instruction, other.response or "", 500 + j), seed=500 + j,
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


def run_item(runner: Runner, v: Variant, item: Item) -> dict:
    out_type = OUT_TYPE[item.step]
    base = DEFAULT_SAMPLING[ROLE[item.step]].model_dump()
    base.update(v.sampling.get(item.step, {}))
    grammar = v.grammar.get(item.step, grammars.GRAMMARS[out_type])
    messages = v.messages(item.step, item.messages)
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
            return {"item": item, "messages": messages, "tries": tries, "obj": obj}
        except grammars.InvalidOutput as exc:
            tries.append({"ok": False, "reason": exc.reason, "text": res.text,
                          "seconds": res.seconds})
            current, temperature = v.retry_request(item.step, messages, base["temperature"],
                                                   res.text, exc.reason)
    return {"item": item, "messages": messages, "tries": tries, "obj": None}


_CLEAN_KW = re.compile(r"^[A-Za-z][A-Za-z0-9%' -]{1,23}$")


def summarise(step: str, results: list[dict]) -> dict:
    ok = [r for r in results if r["obj"] is not None]
    out: dict[str, Any] = {
        "n": len(results), "first_try": sum(r["tries"][0]["ok"] for r in results),
        "after_retry": len(ok),
        "first_reasons": benchlib.tally(r["tries"][0]["reason"] for r in results
                                        if not r["tries"][0]["ok"]),
        "final_reasons": benchlib.tally(r["tries"][-1]["reason"] for r in results
                                        if r["obj"] is None),
        "calls": sum(len(r["tries"]) for r in results),
    }
    if step == "annotate":
        out["copied_example"] = sum(copies_keywords(r["obj"].keywords, shot_keywords(r["messages"]))
                                    for r in ok)
        out["right_domain"] = sum(r["obj"].domain == r["item"].domain for r in ok)
        out["clean"] = sum(all(_CLEAN_KW.match(k) for k in r["obj"].keywords) for r in ok)
        out["samples"] = [r["obj"].keywords for r in ok][:6]
    if step == "draft":
        out["copied_example"] = sum(
            copies_instruction(r["obj"].instruction, shot_keywords(r["messages"])) for r in ok)
        out["clean"] = sum(all(_CLEAN_KW.match(k) for k in r["obj"].keywords)
                           and len(r["obj"].instruction.split()) >= 6 for r in ok)
        out["samples"] = [r["obj"].instruction[:90] for r in ok][:6]
    if step == "review_a":
        for label in ("good", "bad"):
            got = [r["obj"].passed for r in ok if r["item"].label == label]
            out[f"pass_{label}"] = (sum(got), len(got))
    if step == "review_b":
        for label in ("good", "bad"):
            got = [r["obj"].mean for r in ok if r["item"].label == label]
            out[f"mean_{label}"] = benchlib.mean(got)
            out[f"std_{label}"] = benchlib.std(got)
            out[f"n_{label}"] = len(got)
        out["gap"] = out["mean_good"] - out["mean_bad"]
        out["distinct_scores"] = sorted({getattr(r["obj"], f) for r in ok for f in SCORE_FIELDS})
        out["copied_example"] = sum(tuple(getattr(r["obj"], f) for f in SCORE_FIELDS)
                                    in (REVIEW_B_GOOD, REVIEW_B_BAD) for r in ok)
    return out


def spread_text(step: str, f: dict) -> str:
    if step == "review_a":
        return (f"pass good {f['pass_good'][0]}/{f['pass_good'][1]}, "
                f"pass defective {f['pass_bad'][0]}/{f['pass_bad'][1]}")
    if step == "review_b":
        return (f"good {f['mean_good']:.2f}±{f['std_good']:.2f} (n={f['n_good']}), "
                f"bad {f['mean_bad']:.2f}±{f['std_bad']:.2f} (n={f['n_bad']}), "
                f"gap {f['gap']:+.2f}; scores used {f['distinct_scores']}; "
                f"copied worked example {f['copied_example']}")
    if step == "annotate":
        return (f"right domain {f['right_domain']}, clean keywords {f['clean']}, "
                f"copied worked example {f['copied_example']}")
    return (f"clean (plain keywords, instruction >= 6 words) {f['clean']}, "
            f"copied worked example {f['copied_example']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", "--items", type=int, default=6, help="items per step (6)")
    ap.add_argument("--variants", default=",".join(v.name for v in VARIANTS if v.default),
                    help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS)
                    + " (default: all but " + ", ".join(v.name for v in VARIANTS
                                                        if not v.default) + ")")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of steps")
    benchlib.add_common_args(ap, "save all figures and replies to this file")
    args = ap.parse_args()
    benchlib.private_user_dirs()  # the user's settings, caches and data stay untouched

    wanted = args.variants.split(",")
    unknown = set(wanted) - {v.name for v in VARIANTS}
    if unknown:
        ap.error(f"unknown variants: {', '.join(sorted(unknown))}")
    variants = [v for v in VARIANTS if v.name in wanted]
    steps = [s for s in STEPS if s in args.steps.split(",")]
    model = benchlib.resolve_model(args.model)
    if model is None:
        return 2
    idle = benchlib.wait_idle(args.wait_idle)
    print(idle, flush=True)
    t0 = time.perf_counter()
    watch = benchlib.CpuWatch()
    items = build_items(benchlib.load_seeds(), args.items)

    figures: dict[str, dict[str, dict]] = {}
    replies: dict[str, dict[str, list]] = {}
    with benchlib.pipeline_session(ModelSpec(name="tune", path=str(model))) as (session, _):
        runner = Runner(session)
        for v in variants:
            figures[v.name], replies[v.name] = {}, {}
            for step in steps:
                results = [run_item(runner, v, it) for it in items[step]]
                figures[v.name][step] = summarise(step, results)
                replies[v.name][step] = [
                    {"note": r["item"].note, "label": r["item"].label, "tries": r["tries"]}
                    for r in results]
                print(f"  [{time.perf_counter() - t0:6.1f} s] {v.name}/{step} done", flush=True)

    print()
    print(f"model: {model}; K={args.items} seeds (review steps: K good + K defective items); "
          f"{runner.calls} model calls ({runner.cached} served from identical earlier requests), "
          f"{runner.seconds:.1f} s in the model")
    for v in variants:
        print(f"- {v.name}: {v.about}")
    print()
    rows: list[list[str]] = []
    overall: dict[str, tuple[int, int]] = {}
    for v in variants:
        fig = figures[v.name]
        for step in steps:
            f = fig[step]
            rows.append([v.name, step, benchlib.pct(f["first_try"], f["n"]),
                         benchlib.pct(f["after_retry"], f["n"]), spread_text(step, f)])
        overall[v.name] = (sum(f["after_retry"] for f in fig.values()),
                           sum(f["n"] for f in fig.values()))
        rows.append([v.name, "ALL", "", benchlib.pct(*overall[v.name]), ""])
    benchlib.print_table(["variant", "step", "first try", "after retry", "spread"], rows, "llrrl")
    print()
    print("invalid replies (first try | still invalid after the retry):")
    for v in variants:
        for step in steps:
            f = figures[v.name][step]
            if f["first_reasons"] or f["final_reasons"]:
                print(f"  {v.name}/{step}: {benchlib.fmt_reasons(f['first_reasons'])} | "
                      f"{benchlib.fmt_reasons(f['final_reasons'])}")
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
        print("note: K is small; to decide between variants run `-k 21 --steps annotate,draft`")
    benchlib.save_json(args.json, {"figures": figures, "replies": replies,
                                   "variants": [v.__dict__ for v in variants]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

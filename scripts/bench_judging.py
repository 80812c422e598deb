#!/usr/bin/env python3
"""Benchmark: how well `gra-local review`, with default options, tells good pairs from bad.

Reviews the labeled set scripts/judging_set.jsonl (made by scripts/make_judging_set.py:
good pairs, code-made corruptions of them and wrong-but-on-topic answers written by hand,
about half good) with the embedded SmolLM2-135M (or the models of `--models FILE`), a fixed
`--seed` and every other option at its default: the point is to measure the defaults. The
review sees instruction, input and answer only; labels stay here, matched back by each
record's `source` line.

From accepted.jsonl/rejected.jsonl and run.json it computes balanced accuracy (the mean of
the share of good pairs judged good and of bad pairs judged bad; 50 % is chance) of:
- the panel's decision: accepted means judged good (a `duplicate` too: the panel passed it,
  dedup then kept the same instruction's higher-μ twin; the set repeats instructions);
- each reviewer alone (per panel slot: name, name#2, …): good when its verdict passed and
  its mean score is ≥ τ, bad when not, nothing when it never judged the pair (a failed
  call, a veto, routing): those pairs are left out of its figure ("judged" column);
- the relevance reviewer alone (cosine ≥ threshold), its cosine's AUC beside it;
- the AUC of the panel's raw signals: expected and sampled scores, P(pass);
- per kind (good, swapped, truncated, numbers_changed, cross_domain, wrong_on_topic) the
  share the panel judged correctly: wrong-but-on-topic answers are reported on their own.
Last line: `panel_gain=<panel − best single reviewer (relevance included), in points>
balanced_accuracy=<panel, %>`.

Private temporary config/cache/data dirs. Run alone, on an otherwise idle machine:
`python scripts/bench_judging.py [--models FILE] [--seed 0] [--wait-idle 120] [--json F]`.
`--quick` (CI, < 2 min): 4 pairs, a panel of 1; checks the mechanics, not the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from gra_local.core.rundir.report import read_report

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below
import benchlib  # noqa: E402
from make_judging_set import KINDS, OUT, Item  # noqa: E402

SET_FILE = OUT
MODEL_NAME = "smollm2-135m"
RELEVANCE = "relevance"
_LINE = re.compile(r" line (\d+)$")


class Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")
    reasonable: Literal["pass", "fail"]
    complete: Literal["pass", "fail"]
    clear: Literal["pass", "fail"]

    @property
    def passed(self) -> bool:
        return self.reasonable == self.complete == self.clear == "pass"


class ReviewView(BaseModel):
    """What this bench reads of a record's review slot (other fields ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    verdict: Verdict | None = None
    score: float | None = None
    sampled_score: float | None = None
    pass_probs: dict[str, float] | None = None


class RelevanceView(BaseModel):
    """The relevance check's figures in a record: its cosine and the run's threshold."""
    model_config = ConfigDict(extra="ignore")
    cosine: float
    threshold: float | None = None


class RecordView(BaseModel):
    """What this bench reads of a record (the record contract; `relevance` when the run
    had the relevance reviewer: {cosine, threshold}, or a bare cosine)."""

    model_config = ConfigDict(extra="ignore")
    id: str
    source: str | None = None
    decision: Literal["accepted", "rejected"]
    reason: str
    reviews: list[ReviewView] = []
    relevance: RelevanceView | None = None

    @field_validator("relevance", mode="before")
    @classmethod
    def _bare_cosine(cls, value: object) -> object:
        return {"cosine": value} if isinstance(value, int | float) else value

    @property
    def relevance_says_good(self) -> bool | None:
        """Cosine at or above the record's threshold; without one, not vetoed off_topic."""
        if self.relevance is None:
            return None
        if self.relevance.threshold is None:
            return self.reason != "off_topic"
        return self.relevance.cosine >= self.relevance.threshold

    @property
    def line(self) -> int | None:
        m = _LINE.search(self.source or "")
        return int(m.group(1)) if m else None

    @property
    def panel_says_good(self) -> bool:
        return self.decision == "accepted" or self.reason == "duplicate"


@dataclass
class Score:
    """One judge's figures over the pairs it judged."""

    judge: str
    judged: int
    good_right: int
    good_n: int
    bad_right: int
    bad_n: int

    @property
    def balanced_accuracy(self) -> float:
        """Mean of the two recalls, in %; NaN unless it judged pairs of both labels."""
        if not self.good_n or not self.bad_n:
            return math.nan
        return 50 * (self.good_right / self.good_n + self.bad_right / self.bad_n)


def score(judge: str, calls: Iterable[tuple[bool, bool]]) -> Score:
    """`calls`: (is good, said good) per pair judged."""
    s = Score(judge, 0, 0, 0, 0, 0)
    for truth, said in calls:
        s.judged += 1
        if truth:
            s.good_n += 1
            s.good_right += said
        else:
            s.bad_n += 1
            s.bad_right += not said
    return s


def reviewer_says(review: ReviewView, tau: float) -> bool | None:
    """Good, bad, or None when this slot never judged the pair."""
    if review.verdict is None:
        return None
    if not review.verdict.passed:
        return False
    return None if review.score is None else review.score >= tau


def slot_names(reviews: Sequence[ReviewView]) -> list[str]:
    """A reviewer per slot: the model, then model#2, #3 for its further slots in the record."""
    seen: dict[str, int] = {}
    names = []
    for r in reviews:
        seen[r.model] = seen.get(r.model, 0) + 1
        names.append(r.model if seen[r.model] == 1 else f"{r.model}#{seen[r.model]}")
    return names


def auc(pairs: Sequence[tuple[bool, float]]) -> float:
    """P(a good pair's value > a bad one's), ties half (Mann–Whitney); NaN without both."""
    good = [v for t, v in pairs if t]
    bad = [v for t, v in pairs if not t]
    if not good or not bad:
        return math.nan
    wins = sum((g > b) + 0.5 * (g == b) for g in good for b in bad)
    return wins / (len(good) * len(bad))


@dataclass
class Figures:
    panel: Score
    reviewers: list[Score]
    relevance: Score | None
    relevance_auc: float
    kinds: dict[str, tuple[int, int]]  # kind: (judged correctly, pairs)
    reasons: dict[str, int]
    signal_auc: dict[str, tuple[float, int]]
    """AUC of each raw signal the panel had, averaged over a pair's reviewers: "expected
    score" (probability-weighted), "sampled score", "P(pass)"; with the pairs it covers."""

    @property
    def best_single(self) -> Score | None:
        singles = [s for s in [*self.reviewers, self.relevance]
                   if s is not None and not math.isnan(s.balanced_accuracy)]
        return max(singles, key=lambda s: s.balanced_accuracy, default=None)

    @property
    def panel_gain(self) -> float:
        best = self.best_single
        return math.nan if best is None else self.panel.balanced_accuracy - best.balanced_accuracy


def figures(items: Sequence[Item], records: Sequence[RecordView], tau: float) -> Figures:
    """Everything above, for records matched to `items` by their source line (1-based)."""
    truth = [(items[r.line - 1].label == "good", r) for r in records]
    panel = score("panel (decision)", ((t, r.panel_says_good) for t, r in truth))
    per: dict[str, list[tuple[bool, bool]]] = {}
    for t, r in truth:
        for name, review in zip(slot_names(r.reviews), r.reviews, strict=True):
            said = reviewer_says(review, tau)
            if said is not None:
                per.setdefault(name, []).append((t, said))
    reviewers = [score(name, calls) for name, calls in sorted(per.items())]
    rel = [(t, r.relevance.cosine, r.relevance_says_good) for t, r in truth if r.relevance is not None]
    relevance = score(f"{RELEVANCE} (veto)", ((t, bool(said)) for t, _, said in rel)) if rel else None
    kinds: dict[str, tuple[int, int]] = {}
    for r in records:
        item = items[r.line - 1]
        right, n = kinds.get(item.kind, (0, 0))
        kinds[item.kind] = (right + (r.panel_says_good == (item.label == "good")), n + 1)
    return Figures(panel, reviewers, relevance,
                   auc([(t, cosine) for t, cosine, _ in rel]),
                   {k: kinds[k] for k in KINDS if k in kinds},
                   benchlib.tally(r.reason for r in records), signal_aucs(truth))


def signal_aucs(truth: Sequence[tuple[bool, RecordView]]) -> dict[str, tuple[float, int]]:
    def mean(xs: list[float | None]) -> float | None:
        got = [x for x in xs if x is not None]
        return sum(got) / len(got) if got else None

    signals = {  # expected score only where it differs in kind from the sampled one
        "expected score": lambda r: mean([v.score for v in r.reviews if v.sampled_score is not None]),
        "sampled score": lambda r: mean([v.sampled_score for v in r.reviews]),
        "P(pass)": lambda r: mean([sum(v.pass_probs.values()) / 3 if v.pass_probs else None
                                   for v in r.reviews])}
    out = {}
    for name, of in signals.items():
        pairs = [(t, x) for t, r in truth if (x := of(r)) is not None]
        out[name] = (auc(pairs), len(pairs))
    return out


# --- the review -----------------------------------------------------------------------------


def load_set(path: Path) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            items.append(Item.model_validate_json(line))
        except ValidationError as exc:
            raise SystemExit(f"{path} line {n}: not a labeled pair: "
                             f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None
    return items


def quick_pick(items: Sequence[Item]) -> list[Item]:
    """The first two good and the first two bad pairs, in file order."""
    good = [i for i in items if i.label == "good"][:2]
    bad = [i for i in items if i.label == "bad"][:2]
    return [i for i in items if i in good or i in bad]


def read_records(out: Path) -> list[RecordView]:
    recs = []
    for name in ("accepted.jsonl", "rejected.jsonl"):
        path = out / name
        if path.is_file():
            for n, line in enumerate(path.read_bytes().splitlines(), 1):
                try:
                    recs.append(RecordView.model_validate_json(line))
                except ValidationError as exc:
                    err = exc.errors()[0]
                    raise RuntimeError(f"{path} line {n}: not a record this bench reads: "
                                       f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return recs


def review(work: Path, items: Sequence[Item], args: argparse.Namespace,
           model: Path | None) -> tuple[list[RecordView], float, str]:
    """Run `gra-local review` on `items`; the records, τ and run.json's status."""
    data, out = work / "pairs.jsonl", work / "out"
    data.write_text("".join(json.dumps({"instruction": i.instruction, "input": i.input,
                                        "output": i.output}) + "\n" for i in items),
                    encoding="utf-8")
    models = args.models
    if models is None:
        models = work / "models.toml"
        models.write_text(f'[[models]]\nname = "{MODEL_NAME}"\npath = {json.dumps(str(model))}\n',
                          encoding="utf-8")
    cmd = [sys.executable, "-m", "gra_local.cli", "review", str(data), "--out", str(out),
           "--models", str(models), "--seed", str(args.seed), "--quiet"]
    if args.panel is not None:
        cmd += ["--panel", str(args.panel)]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=4 * 3600, check=False)
    report = read_report(out / "run.json")
    if proc.returncode != 0 or report is None:
        raise RuntimeError(f"gra-local review exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    options = report.config.options if report.config is not None else {}
    return read_records(out), float(options.get("tau", 8.0)), report.status


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f}%"


def show(f: Figures, tau: float) -> None:
    rows = []
    for s in [f.panel, *f.reviewers]:
        rows.append((s.judge, s.judged, benchlib.pct(s.good_right, s.good_n),
                     benchlib.pct(s.bad_right, s.bad_n), pct(s.balanced_accuracy)))
    if f.relevance is None:
        rows.append((f"{RELEVANCE} (veto)", "-", "-", "-", "n/a (records carry no relevance)"))
    else:
        s = f.relevance
        rows.append((s.judge, s.judged, benchlib.pct(s.good_right, s.good_n),
                     benchlib.pct(s.bad_right, s.bad_n),
                     f"{pct(s.balanced_accuracy)} (cosine AUC {f.relevance_auc:.2f})"))
    print(f"a reviewer says good: verdict passed and its mean score >= tau {tau:g}")
    benchlib.print_table(("judge", "judged", "good judged good", "bad judged bad",
                          "balanced accuracy"), rows, "lrrrl")
    print()
    benchlib.print_table(("kind", "pairs", "panel right"),
                         [(k, n, benchlib.pct(right, n)) for k, (right, n) in f.kinds.items()],
                         "lrr")
    print(f"reasons: {benchlib.fmt_reasons(f.reasons)}")
    print("AUC of the panel's raw signals (mean over a pair's reviewers; 0.5 = chance): "
          + ", ".join(f"{name} {a:.2f} on {n} pairs" if not math.isnan(a) else f"{name} n/a"
                      for name, (a, n) in f.signal_auc.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, help="models file (default: one entry, the "
                    "embedded model or --model)")
    ap.add_argument("--seed", type=int, default=0, help="the review's --seed (default 0)")
    ap.add_argument("--set", type=Path, default=SET_FILE, help="labeled pairs (default "
                    "scripts/judging_set.jsonl)")
    ap.add_argument("--panel", type=int, default=None, help="reviewers per pair (default: "
                    "gra-local's default)")
    benchlib.add_common_args(ap, "write the figures to this JSON file")
    args = benchlib.parse_args(ap, {"panel": 1}, "4 pairs, a panel of 1, mechanics checked, "
                               "figures not")
    benchlib.private_user_dirs()
    if args.models is not None and not args.models.is_file():
        print(f"--models: no such file: {args.models}", file=sys.stderr)
        return 2
    model = None if args.models is not None else benchlib.resolve_model(args.model)
    if args.models is None and model is None:
        return 2
    items = load_set(args.set)
    if args.quick:
        items = quick_pick(items)
    print(benchlib.wait_idle(args.wait_idle))
    print(f"{len(items)} pairs ({sum(i.label == 'good' for i in items)} good) from {args.set.name}; "
          f"models {args.models or model}; seed {args.seed}; "
          f"{'quick mode' if args.quick else 'full mode'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gra-bench-judging-") as tmp:
        try:
            records, tau, status = review(Path(tmp), items, args, model)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    lines = sorted(r.line or 0 for r in records)
    if status != "complete" or lines != list(range(1, len(items) + 1)):
        print(f"mechanics check failed: status {status!r}, source lines decided {lines} "
              f"for {len(items)} pairs", file=sys.stderr)
        return 1
    f = figures(items, records, tau)
    show(f, tau)
    best = f.best_single
    print(f"best single reviewer: {best.judge if best else 'none'}")
    if args.quick:
        print("quick mode: too few pairs for the figures to mean anything")
    benchlib.save_json(args.json, {
        "set": str(args.set), "pairs": len(items), "seed": args.seed, "quick": args.quick,
        "models": str(args.models or model), "tau": tau,
        "panel": {**asdict(f.panel), "balanced_accuracy": f.panel.balanced_accuracy},
        "reviewers": [{**asdict(s), "balanced_accuracy": s.balanced_accuracy} for s in f.reviewers],
        "relevance": None if f.relevance is None else
        {**asdict(f.relevance), "balanced_accuracy": f.relevance.balanced_accuracy,
         "auc": f.relevance_auc},
        "kinds": {k: {"right": r, "pairs": n} for k, (r, n) in f.kinds.items()},
        "reasons": f.reasons, "best_single": best.judge if best else None,
        "signal_auc": {k: {"auc": a, "pairs": n} for k, (a, n) in f.signal_auc.items()},
        "panel_gain": f.panel_gain})
    print(f"panel_gain={f.panel_gain:.1f} balanced_accuracy={f.panel.balanced_accuracy:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: how well `gra-local review`, with default options, tells good pairs from bad.

Reviews the labeled set scripts/judging_set.jsonl (made by scripts/make_judging_set.py:
good pairs, code-made corruptions of them and wrong-but-on-topic answers written by hand,
about half good) with the embedded SmolLM2-135M (or the models of `--models FILE`), a fixed
`--seed` and every other option at its default: the point is to measure the defaults. The
review sees instruction, input and answer only; labels stay here, matched back by each
record's `source` line.

From accepted.jsonl, rejected.jsonl, unverified.jsonl and run.json it computes, on the same
pairs (all of the set's) for every line, balanced accuracy (the mean of the share of good
pairs judged good and of bad pairs judged bad; 50 % is chance) of:
- the decision (the panel's, or cheap evidence's: `evidence_accept`, `evidence_reject`):
  accepted means judged good (a `duplicate` too: judged good, then dedup kept the same
  instruction's higher-μ twin; the set repeats instructions), rejected bad; an unverified
  pair (no evidence shown informative) is neither, so it counts as not right; how many
  were unverified is shown, and what decided (run.json calibration.decided_by) and how
  many panel slots were never asked;
- each reviewer alone (per panel slot: name, name#2, …): good when its verdict passed and
  its mean score is ≥ τ, bad when not, nothing when it never judged the pair (a failed
  call, a veto, routing, a sample cheap evidence decided): its figure is over the pairs
  it judged ("judged" column), and it competes for best single only if it judged them all;
- the relevance reviewer alone (cosine ≥ threshold), its cosine's AUC beside it;
- the AUC of the panel's raw signals: expected and sampled scores, P(pass);
- per kind (good, swapped, truncated, numbers_changed, cross_domain, wrong_on_topic) the
  share the decision judged correctly, its unverified pairs, and the decision's AUC
  against the good pairs (the mean of the share of good pairs accepted and of that kind's
  pairs rejected, an unverified pair counting half), and the AUC of the decision *score*
  (judging_figures.decision_score: the evidence's margin, or the panel's μ − τ), which
  also ranks the pairs within each side: wrong-but-on-topic answers on their own;
- each piece of evidence alone (relevance cosine, each likelihood signal, expected score,
  P(pass)): its AUC against the good pairs per kind of bad answer, and its pairwise
  accuracy, standing and threshold on the run's own canary pairs (calibration.evidence);
- judge seconds per pair (review, adjudication and likelihood stages).
Last line: `panel_gain=<decision − best single judge (relevance included) that judged every
pair, in points; see judging_figures> balanced_accuracy=<decision, %>`.

Private temporary config/cache/data dirs. Run alone, on an otherwise idle machine:
`python scripts/bench_judging.py [--models FILE] [--seed 0] [--wait-idle 120] [--json F]`.
`--quick` (CI, < 2 min): 4 pairs, a panel of 1; checks the mechanics, not the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pydantic import ValidationError

from gra_local.core.rundir.report import RunReport, read_report

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below
import benchlib  # noqa: E402
from judging_figures import (  # noqa: E402
    RELEVANCE,
    Figures,
    RecordView,
    Score,
    figures,
    kind_aucs,
)
from make_judging_set import OUT, Item  # noqa: E402

SET_FILE = OUT
MODEL_NAME = "smollm2-135m"


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
    for name in ("accepted.jsonl", "rejected.jsonl", "unverified.jsonl"):
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
           model: Path | None) -> tuple[list[RecordView], float, RunReport]:
    """Run `gra-local review` on `items`; the records, τ and run.json."""
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
    return read_records(out), float(options.get("tau", 8.0)), report


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f}%"


def score_row(f: Figures, s: Score, note: str = "") -> tuple[object, ...]:
    partial = s is not f.decision and not f.same_pairs(s)
    return (s.judge, f"{s.judged} of {f.pairs}" if partial else s.judged,
            benchlib.pct(s.good_right, s.good_n), benchlib.pct(s.bad_right, s.bad_n),
            pct(s.balanced_accuracy) + note + (" (its pairs only: not best single)" if partial else ""))


def show(f: Figures, tau: float) -> None:
    rows = [score_row(f, s) for s in [f.decision, *f.reviewers]]
    if f.relevance is None:
        rows.append((f"{RELEVANCE} (veto)", "-", "-", "-", "n/a (records carry no relevance)"))
    else:
        rows.append(score_row(f, f.relevance, f" (cosine AUC {f.relevance_auc:.2f})"))
    print(f"a reviewer says good: verdict passed and its mean score >= tau {tau:g}")
    benchlib.print_table(("judge", "judged", "good judged good", "bad judged bad",
                          "balanced accuracy"), rows, "lrrrl")
    print(f"unverified: {f.decision.unverified} of {f.pairs} pairs (no evidence shown "
          "informative: counted as not right)")
    print()
    aucs, scores = f.decision_auc, f.score_auc

    def fmt(table: dict[str, float], k: str) -> str:
        return "-" if k not in table or math.isnan(table[k]) else f"{table[k]:.2f}"

    print("decision AUC: of accept/reject itself; score AUC: of the decision score (the "
          "evidence's margin or the panel's μ − τ), which ranks within each side")
    benchlib.print_table(
        ("kind", "pairs", "unverified", "decision right", "decision AUC vs good",
         "score AUC vs good"),
        [(k, t.pairs, t.unverified, benchlib.pct(t.right(k == "good"), t.pairs),
          fmt(aucs, k), fmt(scores, k)) for k, t in f.kinds.items()], "lrrrrr")
    print(f"reasons: {benchlib.fmt_reasons(f.reasons)}")
    print("AUC of the panel's raw signals (mean over a pair's reviewers; 0.5 = chance): "
          + ", ".join(f"{name} {a:.2f} on {n} pairs" if not math.isnan(a) else f"{name} n/a"
                      for name, (a, n) in f.signal_auc.items()))


JUDGING_STAGES = ("review_a", "review_b", "adjudicate", "likelihood")


def judge_seconds(report: RunReport, pairs: int) -> float:
    """Seconds of the judging stages (the panel's, the adjudicator's, the scorer's) per pair."""
    return round(sum(report.timings.get(s, 0.0) for s in JUDGING_STAGES) / max(pairs, 1), 2)


def show_evidence(per_kind: dict[str, dict[str, tuple[float, int]]], report: RunReport,
                  pairs: int) -> None:
    """Each piece of evidence alone: its AUC per kind of bad answer against the good pairs,
    and its pairwise accuracy on the run's canary pairs (what the run itself measured)."""
    kinds = sorted({k for row in per_kind.values() for k in row})
    canary = report.calibration.evidence if report.calibration is not None else {}
    rows = []
    for piece, row in per_kind.items():
        pairwise = canary.get(piece.replace(" cosine", "")) if piece.startswith("relevance") \
            else canary.get(piece)
        rows.append((piece, *[f"{row[k][0]:.2f}" if k in row and not math.isnan(row[k][0])
                              else "-" for k in kinds],
                     "-" if pairwise is None or pairwise.accuracy is None
                     else f"{pairwise.accuracy:.0%} of {pairwise.pairs}",
                     "-" if pairwise is None else pairwise.standing or "-",
                     "-" if pairwise is None or pairwise.threshold is None
                     else f"{pairwise.threshold:.3g}"))
    print("\neach piece alone: AUC against the good pairs per kind of bad answer; its "
          "pairwise accuracy, standing and threshold (below it rejects) on the run's canary pairs")
    benchlib.print_table(("evidence", *kinds, "canary pairs", "standing", "threshold"), rows,
                         "l" + "r" * (len(kinds) + 1) + "lr")
    print(f"judge seconds per pair: {judge_seconds(report, pairs)} "
          f"({', '.join(f'{s} {report.timings.get(s, 0.0):.1f} s' for s in JUDGING_STAGES)})")


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
            records, tau, report = review(Path(tmp), items, args, model)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    status = report.status
    lines = sorted(r.line or 0 for r in records)
    if status != "complete" or lines != list(range(1, len(items) + 1)):
        print(f"mechanics check failed: status {status!r}, source lines decided {lines} "
              f"for {len(items)} pairs", file=sys.stderr)
        return 1
    f = figures(items, records, tau)
    show(f, tau)
    per_kind = kind_aucs(items, records)
    show_evidence(per_kind, report, len(items))
    cal = report.calibration
    if cal is None:
        print("decided by: - (run.json has no calibration section); panel slots not asked: 0")
    else:
        print(f"decided by: {cal.decided_by or '-'}; panel slots not asked: {cal.panel_not_asked}")
    best = f.best_single
    print(f"best single judge (of those that judged all {f.pairs} pairs): "
          f"{best.judge if best else 'none'}")
    if args.quick:
        print("quick mode: too few pairs for the figures to mean anything")
    benchlib.save_json(args.json, {
        "set": str(args.set), "pairs": len(items), "seed": args.seed, "quick": args.quick,
        "models": str(args.models or model), "tau": tau,
        "decision": {**asdict(f.decision), "balanced_accuracy": f.decision.balanced_accuracy},
        "unverified": f.decision.unverified,
        "judge": None if cal is None else cal.judge,
        "decided_by": None if cal is None else cal.decided_by,
        "panel_not_asked": None if cal is None else cal.panel_not_asked,
        "reviewers": [{**asdict(s), "balanced_accuracy": s.balanced_accuracy} for s in f.reviewers],
        "relevance": None if f.relevance is None else
        {**asdict(f.relevance), "balanced_accuracy": f.relevance.balanced_accuracy,
         "auc": f.relevance_auc},
        "kinds": {k: {"right": t.right(k == "good"), "pairs": t.pairs, "unverified": t.unverified}
                  for k, t in f.kinds.items()},
        "decision_auc": f.decision_auc, "score_auc": f.score_auc,
        "reasons": f.reasons, "best_single": best.judge if best else None,
        "signal_auc": {k: {"auc": a, "pairs": n} for k, (a, n) in f.signal_auc.items()},
        "panel_gain": f.panel_gain,
        "kind_auc": {p: {k: {"auc": a, "pairs": n} for k, (a, n) in row.items()}
                     for p, row in per_kind.items()},
        "canary_pairs": {} if report.calibration is None else
        {p: d.model_dump(mode="json") for p, d in report.calibration.evidence.items()},
        "judge_seconds_per_pair": judge_seconds(report, len(items))})
    print(f"panel_gain={f.panel_gain:.1f} balanced_accuracy={f.decision.balanced_accuracy:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The summary `gra-local run` and `gra-local review` print from the run's report: every
figure in its place (the text is the one the dict-reading summary printed for this run)."""

from __future__ import annotations

import io

from gra_local.commands.run import print_summary
from gra_local.core.rundir.report import RunReport

REPORT = RunReport.model_validate({
    "schema_version": 2, "status": "exhausted", "out_dir": "/runs/demo",
    "counts": {"attempts": 10, "accepted": 6, "rejected": 3, "adjudicated": 2,
               "by_reason": {"accepted": 5, "adjudicated_accept": 1, "duplicate": 2, "low_score": 1}},
    "rounds": {"1": {"attempts": 6, "accepted": 3, "rejected": 2, "pool_added": 3,
                     "by_reason": {"duplicate": 1}},
               "2": {"attempts": 4, "accepted": 3, "rejected": 1, "by_reason": {"duplicate": 1}}},
    "dedup": {"enabled": True, "embedder": "all-MiniLM-L6-v2", "embedder_sha256": "0" * 64,
              "threshold": 0.9, "references": 14},
    "calibration": {"canaries_per_batch": 2, "canaries_judged": 8, "action": "flag",
                    "reviewers": {"rev-b": {"model": "rev-b", "accuracy": 0.375, "canaries": 8,
                                            "injections": 2, "injections_passed": 1,
                                            "injection_pass_rate": 0.5,
                                            "parse_failure_rate": 0.125, "mean_score": 9.75,
                                            "agreement_with_panel": 0.5, "flagged": True,
                                            "flag_reason": "canary accuracy 3/8 (38%) < 60%"},
                                  "rev-a": {"model": "rev-a", "accuracy": 1.0, "canaries": 8,
                                            "balanced_accuracy": 1.0, "weight": 0.666667,
                                            "parse_failure_rate": 0.0, "mean_score": 8.25,
                                            "agreement_with_panel": 0.875}},
                    "panel": {"krippendorff_alpha_scores": 0.4123, "fleiss_kappa_instruction": None,
                              "canary_krippendorff_alpha_scores": 0.8,
                              "canary_fleiss_kappa_instruction": 0.5},
                    "tau": 8.0, "min_accuracy": 0.6, "min_canaries": 4},
    "judge_validity": {"rev-a": {"structured_calls": 40, "valid": 0.975, "valid_first_try": 0.95,
                                 "counted_failures": 1, "invalid_replies": {"not valid JSON": 3}}},
    "loads": {"gen": 2, "rev-a": 3},
    "roles_shared": {"candidates": 4, "models_registered": 2, "panel": 3},
    "routing": {"stopped_early": 5, "extra_reviewers": 1},
    "sessions": [{"started": "t0", "ended": "t1", "status": "interrupted", "seconds": 12.25},
                 {"started": "t2", "ended": "t3", "status": "exhausted", "seconds": 30.0}],
})

SUMMARY = """
status: exhausted
candidates decided: 9 of 10 attempts; accepted 6 (67%), rejected 3, adjudicated 2
by reason: accepted 5, adjudicated_accept 1, duplicate 2, low_score 1
judge output valid for rev-a: 97.5% of 40 structured calls (95.0% on the first try)
per round:
  round 1: 6 attempts, 3 accepted, 2 rejected (1 duplicates), 3 added to the next round's pool
  round 2: 4 attempts, 3 accepted, 1 rejected (1 duplicates), 0 added to the next round's pool
dedup: all-MiniLM-L6-v2 at cosine 0.9: 2 duplicates dropped (compared with 14 seeds and earlier samples)
reviewers: panel agreement α 0.41 (scores), κ – (instruction checks); 8 canaries judged (on them: α 0.80, κ 0.50)
  rev-a: canary accuracy 100% of 8 (balanced 100%, weight 0.67), injections let through – of 0, parse failures 0%, mean score 8.2, agrees with panel 88%
  rev-b: canary accuracy 38% of 8 (balanced –, weight 1.00), injections let through 50% of 2, parse failures 12%, mean score 9.8, agrees with panel 50%  FLAGGED: canary accuracy 3/8 (38%) < 60%
routing: 5 panel slots skipped (first reviewers sure), 1 reviewers added (panel unsure)
model loads: gen 2, rev-a 3
time: 42.2 s over 2 session(s)
roles shared: 4 candidates had a model play two roles (2 model(s) for a panel of 3)
output: /runs/demo/accepted.jsonl, rejected.jsonl, run.json
"""


def summary(report: RunReport, n_models: int) -> str:
    out = io.StringIO()
    print_summary(report, n_models, out=out)
    return out.getvalue()


def test_summary_of_a_run_with_rounds_dedup_and_canaries() -> None:
    assert summary(REPORT, 2) == SUMMARY


def test_without_dedup_canaries_or_a_second_round_those_lines_say_so_or_go() -> None:
    plain = REPORT.model_copy(update={
        "dedup": RunReport.model_validate({"dedup": {"enabled": False}}).dedup,
        "calibration": None, "rounds": {"1": REPORT.rounds["1"]}, "judge_validity": {}})
    lines = summary(plain, 1).splitlines()
    assert "dedup: off" in lines
    assert not [x for x in lines if x.startswith(("per round", "reviewers", "judge output"))]
    assert lines[-2].startswith("note: one model played every role")

"""The quality report's text, from a run's report: without canaries the panel line says so,
dedup off says so, and a run from before these figures says that instead."""

from __future__ import annotations

from gra_local.core.rundir.report import RunReport
from gra_local.tui.widgets.quality_report import (
    EVIDENCE_COLUMNS,
    evidence_rows,
    reviewer_rows,
    summary_lines,
)

NO_CANARIES = RunReport.model_validate({
    "schema_version": 2,
    "calibration": {"canaries_per_batch": 0, "canaries_judged": 0, "action": None,
                    "reviewers": {"rev": {"model": "rev", "mean_score": 7.25, "samples": 4,
                                          "agreement_with_panel": 0.75}},
                    "panel": {"krippendorff_alpha_scores": 0.3, "items": 4},
                    "tau": 8.0, "min_accuracy": 0.6, "min_canaries": 4},
    "dedup": {"enabled": False},
    "rounds": {"1": {"attempts": 4, "accepted": 1, "rejected": 3}},
})


def test_a_run_without_canaries_or_dedup() -> None:
    assert summary_lines(NO_CANARIES) == [
        "Panel agreement: Krippendorff's α 0.30 (scores), Fleiss' κ – (instruction checks), "
        "4 items; no canaries",
        "Dedup: off",
        "Round 1: 4 attempts, 1 accepted, 3 rejected, 0 added to the next round's pool"]
    assert reviewer_rows(NO_CANARIES) == [("rev", "–", "0", "– of 0", "–", "7.2", "–/–", "75%", "–", "–", "")]


def test_a_run_from_before_the_figures() -> None:
    old = RunReport.model_validate({"schema_version": 1, "status": "complete"})
    assert summary_lines(old) == ["This run.json holds no quality figures (made before they existed)."]
    assert reviewer_rows(old) == []


def test_weights_and_routing_are_shown_when_the_run_used_them() -> None:
    weighted = RunReport.model_validate({
        "schema_version": 2,
        "calibration": {"canaries_per_batch": 4, "canaries_judged": 8, "action": "weight",
                        "reviewers": {"rev": {"model": "rev", "accuracy": 0.75, "canaries": 8,
                                              "balanced_accuracy": 0.5, "weight": 0.1}},
                        "tau": 8.0, "min_accuracy": 0.6, "min_canaries": 4},
        "routing": {"stopped_early": 6, "extra_reviewers": 2},
    })
    row = reviewer_rows(weighted)[0]
    assert row[1] == "75%" and row[-3:] == ("50%", "0.10", "")
    assert summary_lines(weighted)[-1] == ("Routing: 6 panel slots skipped (first reviewers sure), "
                                           "2 reviewers added (panel unsure)")


def test_each_piece_of_evidence_has_a_row_and_the_scorer_a_line() -> None:
    run = RunReport.model_validate({
        "schema_version": 2,
        "calibration": {"canaries_per_batch": 4, "canaries_judged": 8, "action": "weight",
                        "tau": 8.0, "min_accuracy": 0.6, "min_canaries": 4,
                        "evidence": {"likelihood pmi": {"pairs": 4, "accuracy": 1.0, "p_better": 0.97,
                                                        "by_kind": {"swapped": {"pairs": 3, "accuracy": 1.0},
                                                                    "truncated": {"pairs": 1, "accuracy": 1.0}}},
                                     "reviewer smol: scores": {"pairs": 4, "accuracy": 0.5,
                                                               "p_better": 0.5}}},
        "likelihood": {"enabled": True, "model": "smol", "scored": 20},
    })
    assert evidence_rows(run) == [  # a run from before standings: – for both
        ("likelihood pmi", "4", "100%", "0.97", "–", "–", "swapped 100% of 3, truncated 100% of 1"),
        ("reviewer smol: scores", "4", "50%", "0.50", "–", "–", "")]
    assert "Likelihood: 20 answers read by smol" in summary_lines(run)
    assert evidence_rows(NO_CANARIES) == []


EVIDENCE_RUN = RunReport.model_validate({
    "schema_version": 2,
    "calibration": {
        "canaries_per_batch": 4, "canaries_judged": 16, "action": "weight", "judge": "evidence",
        "tau": 8.0, "min_accuracy": 0.6, "min_canaries": 4, "panel_not_asked": 24,
        "decided_by": "the cheap evidence; samples are not sent to the panel; "
                      "likelihood pmi < 0.125 rejects",
        "evidence": {
            "likelihood pmi": {"pairs": 8, "accuracy": 1.0, "p_better": 0.99,
                               "standing": "informative", "threshold": 0.125},
            "reviewer smol: scores": {"pairs": 8, "accuracy": 0.5, "p_better": 0.5,
                                      "standing": "at_chance"},
            "relevance": {"pairs": 2, "accuracy": 1.0, "p_better": 0.88, "standing": "unsettled"}}},
    "rounds": {"1": {"attempts": 6, "accepted": 2, "rejected": 1, "unverified": 3}},
})


def test_evidence_shows_standing_threshold_and_what_decides() -> None:
    assert EVIDENCE_COLUMNS[4:6] == ("standing", "rejects below")
    assert evidence_rows(EVIDENCE_RUN) == [
        ("likelihood pmi", "8", "100%", "0.99", "informative", "0.125", ""),
        ("reviewer smol: scores", "8", "50%", "0.50", "at chance", "–", ""),
        ("relevance", "2", "100%", "0.88", "unsettled", "–", "")]
    lines = summary_lines(EVIDENCE_RUN)
    assert lines[0] == ("Decided by: the cheap evidence; samples are not sent to the panel; "
                        "likelihood pmi < 0.125 rejects; 24 panel slots not asked (no reviewer "
                        "shown informative)")
    assert ("Round 1: 6 attempts, 2 accepted, 1 rejected, 3 unverified, 0 added to the next "
            "round's pool") in lines


def test_no_decided_by_line_without_one_nor_slots_when_none() -> None:
    assert not any(line.startswith("Decided by") for line in summary_lines(NO_CANARIES))
    panel = EVIDENCE_RUN.model_copy(deep=True)
    assert panel.calibration is not None
    panel.calibration.decided_by, panel.calibration.panel_not_asked = "the panel by the paper's rule", 0
    assert summary_lines(panel)[0] == "Decided by: the panel by the paper's rule"

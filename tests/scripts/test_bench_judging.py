"""scripts/bench_judging.py's arithmetic on records made by hand: what counts as the
decision, a reviewer and the relevance reviewer saying good, balanced accuracy (an
unverified pair not right), per-kind shares, the decision's AUC per kind (an unverified
pair half), and panel_gain over the same pairs. (Its --quick run on the embedded model is
in test_benches.py.)"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import bench_judging as bj  # noqa: E402
import judging_figures as jf  # noqa: E402
from make_judging_set import Item  # noqa: E402

PASS = {"reasonable": "pass", "complete": "pass", "clear": "pass"}
FAIL = {**PASS, "clear": "fail"}


def item(n: int, kind: str) -> Item:
    return Item(id=f"j-{n}", instruction=f"q{n}", output=f"a{n}", domain="qa",
                label="good" if kind == "good" else "bad", kind=kind, source="test")


def record(line: int, decision: str, reason: str, reviews: list[dict], **extra: object) -> jf.RecordView:
    return jf.RecordView.model_validate({
        "id": f"d-{line}", "source": f"pairs.jsonl line {line}", "decision": decision,
        "reason": reason, "reviews": reviews, "mean": None, "ignored_field": 1, **extra})


def rev(model: str, verdict: dict | None, score: float | None) -> dict:
    return {"model": model, "verdict": verdict, "score": score, "scores": None, "failures": 0}


ITEMS = [item(1, "good"), item(2, "good"), item(3, "swapped"), item(4, "wrong_on_topic")]


def test_reviewer_says_good_only_with_a_passed_verdict_and_a_score_at_tau() -> None:
    says = [jf.reviewer_says(jf.ReviewView.model_validate(rev("m", v, s)), 8.0)
            for v, s in ((PASS, 8.0), (PASS, 7.9), (FAIL, 9.0), (PASS, None), (None, None))]
    assert says == [True, False, False, None, None]


def test_a_model_in_several_slots_counts_per_slot() -> None:
    reviews = [jf.ReviewView(model=m) for m in ("a", "b", "a", "a")]
    assert jf.slot_names(reviews) == ["a", "b", "a#2", "a#3"]


def test_figures_of_a_small_run() -> None:
    records = [
        record(1, "accepted", "accepted", [rev("a", PASS, 9.0), rev("b", PASS, 6.0)]),
        # the panel passed it, dedup kept its twin: the panel said good
        record(2, "rejected", "duplicate", [rev("a", PASS, 8.5), rev("b", FAIL, None)]),
        # a vetoed it, so b was never scored: b has no say on this pair
        record(3, "rejected", "instruction_failed", [rev("a", FAIL, None), rev("b", PASS, None)]),
        # the adjudicator overruled a's pass
        record(4, "rejected", "adjudicated_reject", [rev("a", PASS, 8.0), rev("b", PASS, 5.0)]),
    ]
    f = jf.figures(ITEMS, records, tau=8.0)
    d = f.decision
    assert (d.good_right, d.good_n, d.bad_right, d.bad_n, d.unverified) == (2, 2, 2, 2, 0)
    assert d.balanced_accuracy == 100.0
    a, b = f.reviewers
    assert (a.judge, a.judged, a.good_right, a.bad_right) == ("a", 4, 2, 1)
    assert a.balanced_accuracy == 75.0
    assert (b.judge, b.judged, b.good_right, b.good_n, b.bad_right, b.bad_n) == ("b", 3, 0, 2, 1, 1)
    assert b.balanced_accuracy == 50.0
    assert f.relevance is None and math.isnan(f.relevance_auc)
    assert f.best_single is a and f.panel_gain == 25.0
    assert {k: (t.right(k == "good"), t.pairs) for k, t in f.kinds.items()} == {
        "good": (2, 2), "swapped": (1, 1), "wrong_on_topic": (1, 1)}
    assert f.decision_auc == {"swapped": 1.0, "wrong_on_topic": 1.0}
    assert f.reasons["duplicate"] == 1


def test_relevance_from_cosine_and_threshold_counts_as_a_single_reviewer() -> None:
    rel = [(0.7, 0.3), (0.35, 0.3), (0.1, 0.3), (0.4, 0.3)]
    records = [record(n, "rejected" if n > 2 else "accepted", "off_topic" if c < t else "low_score",
                      [], relevance={"cosine": c, "threshold": t})
               for n, (c, t) in enumerate(rel, 1)]
    f = jf.figures(ITEMS, records, tau=8.0)
    assert f.decision.balanced_accuracy == 100.0
    assert f.relevance is not None and f.relevance.judged == 4
    assert (f.relevance.good_right, f.relevance.bad_right) == (2, 1)
    assert f.relevance.balanced_accuracy == 75.0
    assert f.relevance_auc == 0.75  # good 0.7, 0.35 vs bad 0.1, 0.4: 3 of 4 orderings
    assert f.best_single is f.relevance and f.panel_gain == 25.0


def test_a_bare_cosine_without_threshold_follows_the_veto() -> None:
    recs = [record(1, "rejected", "off_topic", [], relevance=0.2),
            record(2, "rejected", "low_score", [], relevance=0.25)]
    assert [r.relevance_says_good for r in recs] == [False, True]
    assert record(3, "rejected", "low_score", []).relevance_says_good is None


def test_an_unverified_pair_is_not_right_and_a_tie_in_the_decision_auc() -> None:
    items = [item(1, "good"), item(2, "good"), item(3, "good"), item(4, "good"),
             item(5, "swapped"), item(6, "swapped"), item(7, "truncated"), item(8, "truncated")]
    records = [
        record(1, "accepted", "evidence_accept", []),
        record(2, "rejected", "duplicate", []),  # judged good, its twin kept
        record(3, "unverified", "unverified", []),
        record(4, "rejected", "evidence_reject", []),
        record(5, "rejected", "evidence_reject", []),
        record(6, "unverified", "unverified", []),
        record(7, "accepted", "accepted", []),
        record(8, "accepted", "evidence_accept", []),
    ]
    assert [r.says_good for r in records[:4]] == [True, True, None, False]
    f = jf.figures(items, records, tau=8.0)
    d = f.decision
    assert (d.judged, d.unverified, d.good_right, d.good_n, d.bad_right, d.bad_n) == (8, 2, 2, 4, 1, 4)
    assert d.balanced_accuracy == 37.5  # (2/4 + 1/4) / 2: unverified is neither right call
    good, swapped = f.kinds["good"], f.kinds["swapped"]
    assert (good.pairs, good.accepted, good.unverified, good.rejected) == (4, 2, 1, 1)
    assert (swapped.right(False), swapped.unverified) == (1, 1)
    # good: (2 accepted + ½) / 4 = 0.625; swapped: (1 rejected + ½) / 2 = 0.75; truncated: 0
    assert f.decision_auc == {"swapped": (0.625 + 0.75) / 2, "truncated": 0.625 / 2}
    assert f.reasons["unverified"] == 2


def test_decision_auc_is_the_mean_of_the_two_shares_without_unverified_pairs() -> None:
    good = jf.KindTally(pairs=4, accepted=3)
    assert jf.decision_auc(good, jf.KindTally(pairs=2, accepted=1)) == 0.5 * (0.75 + 0.5)
    assert jf.decision_auc(good, jf.KindTally(pairs=2, unverified=2)) == 0.5 * (0.75 + 0.5)
    assert math.isnan(jf.decision_auc(jf.KindTally(), good))


def test_best_single_is_over_the_decisions_pairs_only() -> None:
    records = [
        record(1, "accepted", "accepted", [rev("a", PASS, 9.0), rev("b", PASS, 9.0)]),
        record(2, "accepted", "accepted", [rev("a", PASS, 7.0), rev("b", None, None)]),
        record(3, "rejected", "instruction_failed", [rev("a", PASS, 9.0), rev("b", FAIL, None)]),
        record(4, "unverified", "unverified", [], relevance={"cosine": 0.1, "threshold": 0.3}),
    ]
    f = jf.figures(ITEMS, records, tau=8.0)
    a, b = f.reviewers
    assert (a.judged, a.balanced_accuracy, b.judged, b.balanced_accuracy) == (3, 25.0, 2, 100.0)
    assert f.relevance is not None and f.relevance.judged == 1
    assert f.decision.balanced_accuracy == 75.0  # pair 4 unverified: not right
    # b is perfect on the two pairs it judged, but no single judged all four: none compared
    assert f.best_single is None and math.isnan(f.panel_gain)
    full = [record(n, r.decision, r.reason, [rev("a", PASS, 9.0 if n < 3 else 1.0)])
            for n, r in enumerate(records, 1)]
    f = jf.figures(ITEMS, full, tau=8.0)
    assert f.best_single is f.reviewers[0] and f.reviewers[0].balanced_accuracy == 100.0
    assert f.panel_gain == -25.0


def test_balanced_accuracy_needs_both_labels() -> None:
    assert math.isnan(jf.score("x", [(True, True), (True, False)]).balanced_accuracy)
    assert jf.auc([(True, 1.0), (False, 1.0)]) == 0.5


def test_a_bad_set_line_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(ITEMS[0].model_dump_json() + "\n" + '{"instruction": "x"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"set.jsonl line 2: not a labeled pair"):
        bj.load_set(path)


def test_an_unreadable_record_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "accepted.jsonl").write_text('{"id": "d-1"}\n', encoding="utf-8")
    with pytest.raises(RuntimeError, match=r"accepted.jsonl line 1: not a record this bench reads"):
        bj.read_records(tmp_path)


def test_unverified_records_are_read_too(tmp_path: Path) -> None:
    for name, line, decision in (("accepted", 1, "accepted"), ("unverified", 2, "unverified")):
        (tmp_path / f"{name}.jsonl").write_text(
            record(line, decision, decision, []).model_dump_json() + "\n", encoding="utf-8")
    recs = bj.read_records(tmp_path)
    assert [(r.line, r.decision, r.says_good) for r in recs] == [(1, "accepted", True),
                                                                  (2, "unverified", None)]


def test_quick_pick_takes_two_of_each_label_in_file_order() -> None:
    picked = bj.quick_pick(bj.load_set(bj.SET_FILE))
    assert [i.label for i in picked].count("good") == 2 and len(picked) == 4


def test_each_piece_alone_has_an_auc_per_kind() -> None:
    items = [item(1, "good"), item(2, "swapped"), item(3, "truncated")]
    lk = {"mean_logprob": -1.0, "low_tail": -3.0}
    records = [record(1, "accepted", "accepted", [], likelihood={**lk, "pmi": 0.5, "end_logprob": -0.1}),
               record(2, "rejected", "low_score", [], likelihood={**lk, "pmi": -0.2, "end_logprob": -0.2}),
               record(3, "rejected", "low_score", [], likelihood={**lk, "pmi": 0.9, "end_logprob": -9.0})]
    aucs = jf.kind_aucs(items, records)
    assert aucs["likelihood pmi"] == {"swapped": (1.0, 1), "truncated": (0.0, 1)}
    assert aucs["likelihood end_logprob"]["truncated"] == (1.0, 1)
    assert aucs["likelihood mean_logprob"]["swapped"] == (0.5, 1)  # a tie

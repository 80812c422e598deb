"""`--format preference` and the contested split: pair structure and types, the pairing
rule, which rejections count as judged, overrides, --min-score on the chosen side, the
zero-pairs error (nothing written), the contested file in every format, the card."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import orjson
import pytest

from gra_local.core.errors import ConfigError, OutputError
from gra_local.core.records import Record
from gra_local.runs import export as ex
from gra_local.runs.browse import write_override
from gra_local.runs.export import contested_path, export_run
from gra_local.runs.preference import NoPreferencePairs, PreferencePair, keyword_key

KW = ["loop", "list", "sum"]
PAIR_FIELDS = {"prompt": str, "chosen": str, "rejected": str, "chosen_id": str, "rejected_id": str,
               "rejected_instruction": str, "keywords": list, "chosen_score": float,
               "rejected_score": float, "domain": str}
UNJUDGED = ("instruction_failed", "generation_failed", "review_failed", "adjudication_failed",
            "too_long")


def _scores(n: int) -> dict:
    return {f: n for f in ("correctness", "clarity", "completeness", "relevance", "coherence",
                           "ethics")} | {"feedback": "ok"}


def rec(n: int, reason: str, mean: float | None, keywords: list[str] = KW,
        instruction: str | None = None, response: str | None = None, domain: str = "coding",
        spread: float = 0.0) -> dict:
    """A valid Record; `reason` decides the decision. Adjudicated ones get two reviewers
    `spread` apart and an adjudication."""
    decision = "accepted" if reason in ("accepted", "adjudicated_accept") else "rejected"
    adjudicated = reason.startswith("adjudicat")
    scored = mean is not None
    reviews = [{"model": name, "score": None if not scored else mean + d,
                "scores": _scores(round(mean + d)) if scored else None}
               for name, d in (("rev-a", spread), ("rev-b", -spread))]
    adjudication = ({"model": "arb", "scores": _scores(9 if decision == "accepted" else 3),
                     "score": 9.0 if decision == "accepted" else 3.0,
                     "kept": decision == "accepted"} if adjudicated and reason != "adjudication_failed" else None)
    return Record(
        id=f"r1-{n}", round=1, attempt=n, instruction=instruction or f"Instruction {n}.",
        response=f"Response {n}." if response is None else response, domain=domain,
        keywords=keywords, summary="s", decision=decision, reason=reason, reason_detail="d",
        reviews=reviews, mean=mean, std=spread if scored else None, adjudication=adjudication,
        generator="gen", reviewers=["rev-a", "rev-b"], adjudicator="arb" if adjudicated else None,
        roles_shared=False, models=[{"name": "gen"}], sampling={}, seed=n,
        tokens={"prompt": 1, "completion": 1}, created_at="2026-01-01T00:00:00Z",
        decided_at="2026-01-01T00:00:01Z").model_dump(mode="json")


def make_run(tmp: Path, records: list[dict]) -> Path:
    run = tmp / "run"
    run.mkdir()
    for name, decision in (("accepted.jsonl", "accepted"), ("rejected.jsonl", "rejected")):
        rows = [r for r in records if r["decision"] == decision]
        (run / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    doc = {"schema_version": 1, "status": "complete", "config": {"options": {"tau": 8.0}},
           "models": {"gen": {"name": "gen", "sha256": "a" * 64, "quantization": "Q4_K_M"}},
           "counts": {"attempts": len(records)}}
    (run / "run.json").write_text(json.dumps(doc))
    return run


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def pairs_of(rows: list[dict]) -> list[tuple[str, str]]:
    return [(r["chosen_id"], r["rejected_id"]) for r in rows]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    other = ["tree", "node", "depth"]
    return make_run(tmp_path, [
        rec(1, "accepted", 8.5), rec(2, "accepted", 9.5), rec(3, "low_score", 4.0),
        rec(4, "adjudicated_reject", 6.0, spread=2.5), rec(5, "adjudicated_accept", 8.4, spread=2.0),
        rec(6, "accepted", 9.0, keywords=other, domain="math"), rec(7, "low_score", 5.0, keywords=other),
        rec(8, "accepted", 9.9, keywords=["only", "accepted", "here"]),
        rec(9, "low_score", 2.0, keywords=["only", "rejected", "here"]),
    ])


def test_pair_fields_and_types(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    res = export_run(run, "preference", out)
    rows = lines(out)
    assert res.exported == len(rows) == 3 and res.format == "preference"
    for row in rows:
        assert set(row) == set(PAIR_FIELDS)
        for name, kind in PAIR_FIELDS.items():
            assert isinstance(row[name], kind), (name, row[name])
        chosen, rejected = (row[k].removeprefix("r1-") for k in ("chosen_id", "rejected_id"))
        assert (row["prompt"], row["chosen"]) == (f"Instruction {chosen}.", f"Response {chosen}.")
        assert (row["rejected_instruction"], row["rejected"]) == \
            (f"Instruction {rejected}.", f"Response {rejected}.")
        assert len(row["keywords"]) == 3 and all(isinstance(k, str) for k in row["keywords"])
        assert row["chosen_score"] > row["rejected_score"]
        PreferencePair.model_validate(row)
    first = rows[0]
    assert first == {"prompt": "Instruction 2.", "chosen": "Response 2.", "rejected": "Response 3.",
                     "chosen_id": "r1-2", "rejected_id": "r1-3",
                     "rejected_instruction": "Instruction 3.", "keywords": ["list", "loop", "sum"],
                     "chosen_score": 9.5, "rejected_score": 4.0, "domain": "coding"}


def test_each_rejected_paired_once_with_the_best_accepted(run: Path, tmp_path: Path) -> None:
    export_run(run, "preference", tmp_path / "p.jsonl")
    rows = lines(tmp_path / "p.jsonl")
    # the loop/list/sum triple: both rejections face the highest μ (r1-2, 9.5), not r1-1 or
    # the adjudicated accept r1-5; the tree triple pairs r1-6 with r1-7; r1-8 and r1-9 share
    # no triple with anything
    assert pairs_of(rows) == [("r1-2", "r1-3"), ("r1-2", "r1-4"), ("r1-6", "r1-7")]
    assert rows[2]["domain"] == "math"
    assert len({r["rejected_id"] for r in rows}) == len(rows)


def test_same_instruction_is_preferred(tmp_path: Path) -> None:
    run = make_run(tmp_path, [rec(1, "accepted", 9.5, instruction="Sum a list."),
                              rec(2, "accepted", 8.1, instruction="Write a loop."),
                              rec(3, "low_score", 3.0, instruction="  write a LOOP. ")])
    res = export_run(run, "preference", tmp_path / "p.jsonl")
    (row,) = lines(tmp_path / "p.jsonl")
    assert (row["chosen_id"], row["prompt"], row["rejected_instruction"]) == \
        ("r1-2", "Write a loop.", "  write a LOOP. ")
    assert res.pairing is not None and res.pairing.same_instruction == 1


def test_ties_go_to_the_earlier_record(tmp_path: Path) -> None:
    run = make_run(tmp_path, [rec(2, "accepted", 9.0), rec(1, "accepted", 9.0),
                              rec(3, "low_score", 3.0)])
    export_run(run, "preference", tmp_path / "p.jsonl")
    assert pairs_of(lines(tmp_path / "p.jsonl")) == [("r1-1", "r1-3")]


def test_keyword_triples_are_normalised(tmp_path: Path) -> None:
    assert keyword_key({"keywords": [" Sum", "LOOP ", "list"]}) == ("list", "loop", "sum")
    assert keyword_key({"keywords": []}) == () and keyword_key({}) == ()
    run = make_run(tmp_path, [rec(1, "accepted", 9.0, keywords=["Sum ", " LOOP", "List"]),
                              rec(2, "low_score", 3.0, keywords=["list", "loop", "sum"])])
    export_run(run, "preference", tmp_path / "p.jsonl")
    (row,) = lines(tmp_path / "p.jsonl")
    assert pairs_of([row]) == [("r1-1", "r1-2")] and row["keywords"] == ["list", "loop", "sum"]


def test_only_judged_rejections_are_paired(tmp_path: Path) -> None:
    records = [rec(1, "accepted", 9.0), rec(2, "low_score", 4.0), rec(3, "adjudicated_reject", 6.0, spread=2.0),
               rec(4, "duplicate", 8.6)]
    records += [rec(10 + i, reason, 5.0 if reason != "instruction_failed" else None)
                for i, reason in enumerate(UNJUDGED)]
    records.append(rec(20, "low_score", 3.0, response="  "))  # no response to prefer against
    res = export_run(make_run(tmp_path, records), "preference", tmp_path / "p.jsonl")
    rows = lines(tmp_path / "p.jsonl")
    assert sorted(r["rejected_id"] for r in rows) == ["r1-2", "r1-3"]  # a duplicate passed the panel
    assert res.pairing is not None
    assert res.pairing.left_out == {reason: 1 for reason in UNJUDGED} | {"low_score": 1,
                                                                         "duplicate": 1}
    assert res.pairing.judged_rejected == 2


def test_overrides_are_honoured(run: Path, tmp_path: Path) -> None:
    write_override(run, "r1-2", "rejected", note="wrong answer")  # the best accepted
    write_override(run, "r1-9", "accepted")                       # a low_score, now accepted
    write_override(run, "r1-7", "accepted")
    write_override(run, "r1-7", "rejected")                       # the last one wins
    res = export_run(run, "preference", tmp_path / "p.jsonl")
    rows = lines(tmp_path / "p.jsonl")
    # r1-2 (reason "accepted") is now a judged rejection, r1-1 (8.5) the best accepted left
    assert pairs_of(rows) == [("r1-1", "r1-2"), ("r1-1", "r1-3"), ("r1-1", "r1-4"), ("r1-6", "r1-7")]
    assert res.overridden == 2
    # r1-9 (now accepted) has no rejected partner in its triple
    assert "r1-9" not in {r["chosen_id"] for r in rows}


def test_min_score_applies_to_the_chosen_side(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "preference", tmp_path / "p.jsonl", min_score=9.2)
    rows = lines(tmp_path / "p.jsonl")
    # the tree triple's only accepted (9.0) is below 9.2; low rejected scores still count
    assert pairs_of(rows) == [("r1-2", "r1-3"), ("r1-2", "r1-4")]
    assert all(r["chosen_score"] >= 9.2 for r in rows)
    assert res.pairing is not None and res.pairing.chosen_below_min_score == 3
    assert res.pairing.rejected_unpaired == 2  # r1-7 (lost its partner), r1-9
    assert "9.2 (chosen side)" in res.card.read_text()


@pytest.mark.parametrize("case", ["disjoint", "unjudged_only", "min_score"])
def test_zero_pairs_is_a_typed_error_and_writes_nothing(tmp_path: Path, case: str) -> None:
    records = {
        "disjoint": [rec(1, "accepted", 9.0), rec(2, "low_score", 3.0, keywords=["a", "b", "c"])],
        "unjudged_only": [rec(1, "accepted", 9.0), rec(2, "instruction_failed", None),
                          rec(3, "generation_failed", None, response="")],
        "min_score": [rec(1, "accepted", 8.2), rec(2, "low_score", 3.0),
                      rec(3, "adjudicated_accept", 8.1, spread=2.0)],
    }[case]
    run = make_run(tmp_path, records)
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    with pytest.raises(NoPreferencePairs) as err:
        export_run(run, "preference", out_dir / "p.jsonl", min_score=9.0 if case == "min_score" else None)
    assert isinstance(err.value, OutputError) and err.value.exit_code == 2
    msg = str(err.value)
    assert "no keyword triple has both an accepted and a rejected judged response" in msg
    assert "\n" not in msg and str(run) in msg
    expected = {"unjudged_only": "never judged, left out: generation_failed 1, instruction_failed 1",
                "min_score": "2 accepted below --min-score 9.0",
                "disjoint": "1 accepted response(s) and 1 judged rejected response(s)"}[case]
    assert expected in msg
    assert list(out_dir.iterdir()) == []


def test_include_rejected_does_not_apply(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--include-rejected does not apply to --format preference"):
        export_run(run, "preference", tmp_path / "p.jsonl", include_rejected=True)
    assert not (tmp_path / "p.jsonl").exists()


# --- the contested split -------------------------------------------------------------


def test_preference_always_writes_the_contested_file(run: Path, tmp_path: Path) -> None:
    write_override(run, "r1-5", "rejected")
    res = export_run(run, "preference", tmp_path / "p.jsonl", min_score=9.5)
    assert res.contested == tmp_path / "p.contested.jsonl" and res.contested_count == 2
    rows = lines(res.contested)
    assert [r["id"] for r in rows] == ["r1-4", "r1-5"]  # --min-score does not apply
    r4, r5 = rows
    assert set(r4) == {"id", "instruction", "response", "domain", "keywords", "decision", "reason",
                       "reviewer_scores", "mean", "std", "adjudicator", "adjudicator_score",
                       "override"}
    assert (r4["reason"], r4["decision"], r4["override"]) == ("adjudicated_reject", "rejected", None)
    assert r4["reviewer_scores"] == [{"model": "rev-a", "score": 8.5}, {"model": "rev-b", "score": 3.5}]
    assert (r4["mean"], r4["std"], r4["adjudicator"], r4["adjudicator_score"]) == (6.0, 2.5, "arb", 3.0)
    assert (r5["reason"], r5["decision"], r5["adjudicator_score"]) == ("adjudicated_accept", "rejected", 9.0)
    assert r5["override"]["label"] == "rejected"


def test_preference_contested_file_may_be_empty(tmp_path: Path) -> None:
    run = make_run(tmp_path, [rec(1, "accepted", 9.0), rec(2, "low_score", 3.0)])
    res = export_run(run, "preference", tmp_path / "p.jsonl")
    assert res.contested_count == 0 and res.contested is not None and res.contested.read_bytes() == b""
    assert "`p.contested.jsonl`: 0 adjudicated" in res.card.read_text()


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "jsonl"])
def test_contested_flag_writes_the_same_format(run: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "train.jsonl"
    res = export_run(run, fmt, out, contested=True)  # type: ignore[arg-type]
    assert res.contested == tmp_path / "train.contested.jsonl" and res.contested_count == 2
    main, split = lines(out), lines(res.contested)
    assert len(main) == 5 and len(split) == 2  # accepts and rejects, whatever --include-rejected says
    assert {tuple(sorted(r)) for r in main + split} == {tuple(sorted(main[0]))}
    if fmt == "jsonl":
        assert [r["id"] for r in split] == ["r1-4", "r1-5"]
        # (mean, std, adjudicated score, panel scores) as the fixture wrote them
        contested = {"r1-4": (6.0, 2.5, 3.0, [8.5, 3.5]), "r1-5": (8.4, 2.0, 9.0, [10.4, 6.4])}
        for r in split:
            Record.model_validate(r)
            mean, std, adjudicated, panel = contested[r["id"]]
            assert (r["mean"], r["std"], r["adjudication"]["score"]) == (mean, std, adjudicated)
            assert [v["score"] for v in r["reviews"]] == pytest.approx(panel)
    if fmt == "alpaca":
        assert [r["instruction"] for r in split] == ["Instruction 4.", "Instruction 5."]


def test_no_contested_file_without_the_flag(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "alpaca", tmp_path / "a.jsonl")
    assert res.contested is None and not (tmp_path / "a.contested.jsonl").exists()
    assert "Not written" in res.card.read_text()


def test_contested_path() -> None:
    assert contested_path(Path("/x/train.jsonl")) == Path("/x/train.contested.jsonl")
    assert contested_path(Path("/x/train.json")) == Path("/x/train.contested.json")
    assert contested_path(Path("/x/train")) == Path("/x/train.contested.jsonl")


def test_card_explains_the_pairs(run: Path, tmp_path: Path) -> None:
    res = export_run(run, "preference", tmp_path / "pairs.jsonl")
    card = res.card.read_text()
    assert res.card == tmp_path / "pairs.card.md"
    assert "- format: `preference`" in card and "- pairs: 3" in card
    assert "## Preference pairs" in card and "paired once with the best accepted response" in card
    assert "| pairs | 3 |" in card and "| keyword triples | 4 |" in card
    assert "| keyword triples paired | 2 |" in card and "| accepted used as chosen | 2 |" in card
    assert "| judged rejected | 4 |" in card
    assert "| judged rejected without an accepted response in their triple | 1 |" in card
    assert "μ of chosen responses" in card and "μ of rejected responses" in card
    assert "`pairs.contested.jsonl`: 2 adjudicated sample(s)" in card


def test_failed_write_leaves_no_file(run: Path, tmp_path: Path, monkeypatch) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:  # pairs sync, the contested file does not
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    monkeypatch.setattr(ex.os, "fsync", fsync)
    with pytest.raises(OutputError, match="cannot write"):
        export_run(run, "preference", out_dir / "p.jsonl")
    assert list(out_dir.iterdir()) == []


def test_command_reports_pairs_and_contested(run: Path, tmp_path: Path, capsys) -> None:
    from gra_local.commands.export import export_command

    out = tmp_path / "dpo.jsonl"
    args = argparse.Namespace(run_dir=run, format="preference", out=out, include_rejected=False,
                              min_score=None, contested=False)
    assert export_command(args) == 0
    text = capsys.readouterr().out
    assert f"wrote 3 preference pairs (preference) to {out}" in text
    assert "2 keyword triples paired, 1 judged rejected without an accepted partner" in text
    assert f"contested: 2 adjudicated samples to {tmp_path / 'dpo.contested.jsonl'}" in text
    assert f"dataset card: {tmp_path / 'dpo.card.md'}" in text


def test_unverified_records_are_on_neither_side_of_a_pair(tmp_path: Path) -> None:
    kept = [{**rec(n, "low_score", None), "decision": "unverified", "reason": "unverified"}
            for n in (3, 4)]
    run = make_run(tmp_path, [rec(1, "accepted", 9.0), rec(2, "low_score", 4.0)])
    (run / "unverified.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in kept))
    res = export_run(run, "preference", tmp_path / "p.jsonl")
    assert pairs_of(lines(tmp_path / "p.jsonl")) == [("r1-1", "r1-2")]
    assert res.unverified == 2 and res.pairing is not None and res.pairing.left_out == {}
    write_override(run, "r1-4", "rejected", note="read it: wrong")  # a person judged this one
    res = export_run(run, "preference", tmp_path / "p.jsonl")
    assert pairs_of(lines(tmp_path / "p.jsonl")) == [("r1-1", "r1-2"), ("r1-1", "r1-4")]
    assert res.unverified == 1


def test_build_pairs_never_takes_an_unverified_record() -> None:
    from gra_local.runs.preference import build_pairs

    unverified = {**rec(3, "accepted", 9.5), "decision": "unverified", "reason": "unverified"}
    sneaked = {**rec(4, "low_score", 2.0), "decision": "unverified", "reason": "low_score"}
    prefs = build_pairs([unverified, rec(1, "accepted", 9.0)], [sneaked, rec(2, "low_score", 4.0)])
    assert [(p.chosen_id, p.rejected_id) for p in prefs.pairs] == [("r1-1", "r1-2")]

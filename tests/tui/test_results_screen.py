"""The Runs and results screen: records, filters, detail, overrides, and a snapshot."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from harness import ScreenHost, tables_settled
from textual.widgets import DataTable, Select, Static

from gra_local.runs.browse import load_overrides
from gra_local.tui.screens.results import ResultsScreen
from gra_local.tui.services import Services
from gra_local.tui.settings import Settings
from gra_local.tui.widgets.override_dialog import OverrideDialog

SIZE = (120, 36)


def _review(model: str, score: int, feedback: str) -> dict:
    scores = {f: score for f in ("correctness", "clarity", "completeness", "relevance",
                                 "coherence", "ethics")}
    return {"model": model, "verdict": {"reasonable": "pass", "complete": "pass", "clear": "pass"},
            "scores": {**scores, "feedback": feedback}, "score": float(score), "failures": 0}


def _record(n: int, decision: str, reason: str, domain: str, scores: tuple[int, int],
            generator: str, instruction: str, adjudicated: bool = False) -> dict:
    reviews = [_review("judge-a", scores[0], f"judge-a on r1-{n}: solid"),
               _review("judge-b", scores[1], f"judge-b on r1-{n}: needs detail")]
    mean = sum(scores) / 2
    adj = ({"model": "arbiter", "scores": reviews[0]["scores"], "score": 8.0, "kept": True}
           if adjudicated else None)
    return {
        "id": f"r1-{n}", "round": 1, "attempt": n, "instruction": instruction,
        "response": f"Answer number {n}.", "domain": domain,
        "keywords": ["loop", "list", "sum"], "summary": "Summing a list with a loop.",
        "decision": decision, "reason": reason, "reason_detail": f"μ={mean:.2f}",
        "reviews": reviews, "mean": mean, "std": abs(scores[0] - scores[1]) / 2,
        "adjudication": adj, "generator": generator, "reviewers": ["judge-a", "judge-b"],
        "adjudicator": "arbiter" if adjudicated else None, "roles_shared": False,
        "models": [{"name": generator}], "sampling": {}, "seed": n,
        "tokens": {"prompt": 100, "completion": 50},
        "created_at": "2026-01-01T00:00:00Z", "decided_at": "2026-01-01T00:00:01Z",
    }


RECORDS = [
    _record(1, "accepted", "accepted", "coding", (9, 9), "smol", "Write a loop that sums a list."),
    _record(2, "accepted", "adjudicated_accept", "math", (9, 5), "smol", "Prove that 2+2=4.", True),
    _record(3, "rejected", "low_score", "coding", (3, 4), "qwen", "Write a sort in one line."),
    _record(4, "rejected", "low_score", "qa", (5, 6), "qwen", "What is the capital of France?"),
    _record(5, "accepted", "accepted", "qa", (8, 9), "qwen", "Name three primary colours."),
]


def write_run(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    for name in ("accepted", "rejected"):
        (run_dir / f"{name}.jsonl").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in RECORDS if r["decision"] == name))
    (run_dir / "run.json").write_bytes(orjson.dumps({
        "schema_version": 1, "status": "complete",
        "counts": {"attempts": 5, "accepted": 3, "rejected": 2},
        "models": {"smol": {"name": "smol"}, "qwen": {"name": "qwen"}},
        "sessions": [{"started": "2026-01-01T00:00:00Z", "ended": "2026-01-01T00:10:00Z"}]}))
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "demo-run")


def host(run_dir: Path) -> ScreenHost:
    services = Services(settings=Settings(default_out_dir=str(run_dir.parent / "none")))
    return ScreenHost(ResultsScreen(), services=services, run_dir=run_dir)


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_records_filter_detail_and_override(run_dir: Path) -> None:
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ResultsScreen)
        table = screen.query_one("#records", DataTable)
        assert table.row_count == 5

        screen.query_one("#f-decision", Select).value = "rejected"
        await pilot.pause()
        assert table.row_count == 2
        assert {str(table.get_row_at(i)[0]) for i in range(2)} == {"r1-3", "r1-4"}
        screen.query_one("#f-decision", Select).clear()
        await pilot.pause()
        assert table.row_count == 5

        table.focus()
        table.move_cursor(row=1)
        await pilot.pause()
        detail = str(screen.query_one("#record-detail", Static).render())
        assert "judge-a on r1-2: solid" in detail and "judge-b on r1-2: needs detail" in detail
        assert "Prove that 2+2=4." in detail and "arbiter" in detail

        table.move_cursor(row=2)  # r1-3, rejected
        await pilot.pause()
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, OverrideDialog)
        await pilot.press(*"fine really", "enter")
        await pilot.pause()
        assert app.screen is screen
        ov = load_overrides(run_dir)
        assert ov["r1-3"]["label"] == "accepted" and ov["r1-3"]["note"] == "fine really"
        assert str(table.get_row_at(2)[1]) == "accepted*"
        assert "override → accepted" in str(screen.query_one("#record-detail", Static).render())
        assert (run_dir / "rejected.jsonl").read_bytes().count(b"\n") == 2


async def test_text_search_and_score_range(run_dir: Path) -> None:
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"sort")
        await pilot.pause()
        table = app.screen.query_one("#records", DataTable)
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "r1-3"
        await pilot.press("escape")
        app.screen.action_clear_filters()
        await pilot.pause()
        app.screen.query_one("#f-min").value = "7"
        await pilot.pause()
        assert table.row_count == 3


async def test_runs_list_and_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_run(out / "first")
    write_run(out / "nested" / "second")
    app = ScreenHost(ResultsScreen(), services=Services(settings=Settings(default_out_dir=str(out))))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert {r.path.name for r in screen.runs} == {"first", "second"}
        opened = screen.run_dir
        await pilot.press("n")
        await settle(pilot)
        assert screen.run_dir != opened and screen.query_one("#records", DataTable).row_count == 5


def test_detail_markup_is_literal() -> None:
    from textual.content import Content

    from gra_local.tui.widgets.record_view import render_record

    rec = {**RECORDS[0], "instruction": "use [b]x[/b] and arr[0] \\", "summary": "s[",
           "keywords": ["[a]", "b", "c"]}
    plain = Content.from_markup(render_record(rec, {"label": "rejected", "note": "[/]"})).plain
    assert "use [b]x[/b] and arr[0] \\" in plain and "Summary s[" in plain and "[/]" in plain


def test_snapshot(snap_compare, run_dir: Path) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await tables_settled(pilot)

    assert snap_compare(host(run_dir), terminal_size=SIZE, run_before=run_before)


async def test_export_from_the_results_screen(run_dir: Path) -> None:
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#export-format").value = "sharegpt"
        await pilot.pause()  # a new format renames the file: set the path after it
        dialog.query_one("#export-path").value = str(run_dir / "out.sharegpt.jsonl")
        await pilot.click("#export-save")
        await settle(pilot)
    lines = (run_dir / "out.sharegpt.jsonl").read_text().splitlines()
    assert lines and all('"conversations"' in line for line in lines)
    assert (run_dir / "out.sharegpt.card.md").is_file()


QUALITY = {
    "calibration": {
        "canaries_per_batch": 4, "canaries_judged": 12, "action": "flag",
        "tau": 8.0, "min_accuracy": 0.6, "min_canaries": 4,
        "panel": {"krippendorff_alpha_scores": 0.41, "fleiss_kappa_instruction": 0.12, "items": 9},
        "reviewers": {
            "judge-a": {"model": "judge-a", "accuracy": 0.9, "canaries": 10, "parse_failure_rate": 0.0,
                        "mean_score": 7.5, "mean_canary_good_score": 8.8,
                        "mean_canary_bad_score": 3.1, "agreement_with_panel": 0.8,
                        "flagged": False},
            "judge-b": {"model": "judge-b", "accuracy": 0.4, "canaries": 10, "parse_failure_rate": 0.1,
                        "injections": 2, "injections_passed": 2, "injection_pass_rate": 1.0,
                        "mean_score": 9.6, "agreement_with_panel": 0.5, "flagged": True,
                        "flag_reason": "canary accuracy 4/10 (40%) < 60%"},
        },
    },
    "dedup": {"enabled": True, "embedder": "all-MiniLM-L6-v2", "embedder_sha256": "0" * 64,
              "threshold": 0.9, "references": 24},
    "rounds": {"1": {"attempts": 4, "accepted": 2, "rejected": 2, "pool_added": 2},
               "2": {"attempts": 3, "accepted": 1, "rejected": 2, "pool_added": 0}},
}


async def test_quality_report_shows_reviewers_dedup_and_rounds(run_dir: Path) -> None:
    from gra_local.tui.widgets.quality_report import QualityReport

    doc = orjson.loads((run_dir / "run.json").read_bytes())
    doc["counts"]["by_reason"] = {"duplicate": 1}
    (run_dir / "run.json").write_bytes(orjson.dumps(doc | QUALITY))
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, QualityReport)
        summary = str(app.screen.query_one("#summary", Static).render())
        assert "α 0.41" in summary and "κ 0.12" in summary and "12 canaries judged" in summary
        assert "1 duplicates dropped" in summary and "Round 2: 3 attempts" in summary
        table = app.screen.query_one("#reviewers", DataTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert rows[0][:3] == ["judge-a", "90%", "10"]
        assert rows[1][-1].startswith("FLAGGED: canary accuracy 4/10")
        assert (rows[0][3], rows[1][3]) == ("– of 0", "100% of 2")  # injection canaries let through
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)


async def test_quality_report_of_an_old_run_says_so(run_dir: Path) -> None:
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert "made before they existed" in str(app.screen.query_one("#summary", Static).render())


UNVERIFIED = {**_record(6, "unverified", "unverified", "qa", (0, 0), "smol", "Why is the sky blue?"),
              "reviews": [], "mean": None, "std": None,
              "reason_detail": "no evidence informative when the run ended"}


async def test_unverified_records_are_listed_filtered_and_counted(run_dir: Path) -> None:
    (run_dir / "unverified.jsonl").write_bytes(orjson.dumps(UNVERIFIED) + b"\n")
    doc = orjson.loads((run_dir / "run.json").read_bytes())
    doc["counts"]["unverified"] = 1
    (run_dir / "run.json").write_bytes(orjson.dumps(doc))
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ResultsScreen)
        table = screen.query_one("#records", DataTable)
        assert table.row_count == 6
        label = str(screen.query_one("#runs").get_option_at_index(0).prompt)
        assert "✓3 ✗2 ?1" in label
        decision = screen.query_one("#f-decision", Select)
        decision.value = "unverified"  # a Select refuses a value it does not offer
        await pilot.pause()
        assert table.row_count == 1 and list(table.get_row_at(0)[:3]) == ["r1-6", "unverified", "unverified"]
        detail = str(screen.query_one("#record-detail", Static).render())
        assert "unverified (unverified)" in detail and "no evidence informative" in detail
        decision.value = "rejected"
        await pilot.pause()
        assert table.row_count == 2  # an unverified record is not a rejected one


async def test_quality_report_shows_what_decides_and_each_pieces_standing(run_dir: Path) -> None:
    from gra_local.tui.widgets.quality_report import QualityReport

    doc = orjson.loads((run_dir / "run.json").read_bytes())
    calibration = {**QUALITY["calibration"], "judge": "evidence", "panel_not_asked": 6,
                   "decided_by": "the cheap evidence; likelihood pmi < 0.125 rejects",
                   "evidence": {"likelihood pmi": {"pairs": 8, "accuracy": 1.0, "p_better": 0.99,
                                                   "standing": "informative", "threshold": 0.125}}}
    (run_dir / "run.json").write_bytes(orjson.dumps(doc | {"calibration": calibration}))
    app = host(run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, QualityReport)
        summary = str(app.screen.query_one("#summary", Static).render())
        assert summary.startswith("Decided by: the cheap evidence; likelihood pmi < 0.125 "
                                  "rejects; 6 panel slots not asked")
        table = app.screen.query_one("#evidence", DataTable)
        assert [str(c.label) for c in table.columns.values()][4:6] == ["standing", "rejects below"]
        assert list(table.get_row_at(0)[4:6]) == ["informative", "0.125"]


async def test_a_run_without_scores_says_so_instead_of_an_empty_axis(tmp_path: Path) -> None:
    """Decided by the cheap evidence: no record has a panel score, so the score plots give
    way to one line that says why; a run with scores draws them."""
    run_dir = tmp_path / "evidence-run"
    run_dir.mkdir()
    unscored = [{**r, "reviews": [], "mean": None, "std": None, "reason": "evidence_accept"}
                for r in RECORDS if r["decision"] == "accepted"]
    (run_dir / "accepted.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in unscored))
    (run_dir / "run.json").write_bytes(orjson.dumps({"schema_version": 1, "status": "complete",
                                                     "counts": {"attempts": 3, "accepted": 3}}))
    for where, drawn in ((run_dir, False), (write_run(tmp_path / "scored"), True)):
        app = host(where)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            empty = app.screen.query_one("#hist-empty", Static)
            assert empty.display is not drawn and app.screen.query_one("#plot-hist").display is drawn
            assert app.screen.query_one("#spread-empty", Static).display is not drawn
            assert str(empty.render()).startswith("no scores yet")

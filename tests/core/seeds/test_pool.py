"""check_pool: what makes a pool file unusable (then it is rebuilt from the seeds)."""

from __future__ import annotations

from gra_local.core.seeds.pool import PoolEntry, check_pool


def entry(source: str, round_no: int = 0) -> dict:
    return PoolEntry(source=source, round=round_no, instruction=f"Do {source}.", domain="math",
                     keywords=["a", "b", "c"], summary="A sum.").model_dump()


def rows(*objs: object) -> list[tuple[int, object]]:
    return list(enumerate(objs, 1))


def test_a_sound_pool_has_no_problems() -> None:
    check = check_pool(rows(entry("seed line 1"), entry("seed line 2"), entry("r1-000001", 1)), [], 2)
    assert check.problems == [] and check.seeds_complete
    assert [e.source for e in check.seeds] == ["seed line 1", "seed line 2"]
    assert [e.source for e in check.later] == ["r1-000001"]


def test_an_empty_pool_is_damaged() -> None:
    assert check_pool([], [], None).problems == ["empty"]
    assert check_pool([], [], 8).problems == ["empty"]


def test_a_pool_with_only_later_entries_has_no_seeds_to_draw_from() -> None:
    assert check_pool(rows(entry("r1-000001", 1)), [], None).problems == ["no seed entries"]


def test_wrong_schema_lines_are_named_and_the_valid_entries_kept() -> None:
    check = check_pool(rows(entry("seed line 1"), {"source": "seed line 2"}, [1, 2],
                            entry("r1-000001", 1)), [], None)
    assert check.problems[0].startswith("line 2: not a pool entry (round: Field required")
    assert check.problems[1].startswith("line 3: not a pool entry (")
    assert len(check.problems) == 2
    assert [e.source for e in check.seeds] == ["seed line 1"]
    assert [e.source for e in check.later] == ["r1-000001"]


def test_fewer_seed_entries_than_the_run_wrote_is_damage() -> None:
    check = check_pool(rows(entry("seed line 1")), [], 3)
    assert check.problems == ["1 seed entries where the run wrote 3"]
    assert not check.seeds_complete and "rebuilt from the seeds" in check.warning("pool.jsonl")


def test_damage_after_every_seed_entry_keeps_the_seeds() -> None:
    check = check_pool(rows(entry("seed line 1"), entry("seed line 2")), ["line 3: cut short"], 2)
    assert check.problems == ["line 3: cut short"] and check.seeds_complete
    assert "seeds are all there" in check.warning("pool.jsonl")
    assert not check_pool(rows(entry("seed line 1")), ["line 2: cut short"], None).seeds_complete


def test_reading_problems_are_carried_and_the_warning_is_one_line() -> None:
    check = check_pool(rows(entry("seed line 1")), ["line 2: not valid JSON", "line 3: cut short"], None)
    assert check.problems == ["line 2: not valid JSON", "line 3: cut short"]
    text = check.warning("/runs/x/pool.jsonl")
    assert "\n" not in text
    assert text.startswith("/runs/x/pool.jsonl: damaged (line 2: not valid JSON and 1 more problem(s)); rebuilt")

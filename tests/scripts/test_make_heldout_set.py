"""scripts/make_heldout_set.py: the committed held-out set is exactly what the script makes,
balanced with the kind counts it promises, held out from judging_set.jsonl and the example
seeds (no instruction or answer shared), and each bad pair is really what its kind says."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from gra_local.core.quality.canaries import MIN_WORDS_TO_TRUNCATE

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import make_heldout_set as mk  # noqa: E402
import make_judging_set  # noqa: E402

ITEMS = mk.build()
GOOD = {(i.instruction, i.input): i for i in ITEMS if i.label == "good"}


def test_ids_run_in_file_order() -> None:
    """(That the committed file is what the script makes, and --check: test_make_judging_set.py.)"""
    assert [i.id for i in ITEMS] == [f"h-{n:03d}" for n in range(1, len(ITEMS) + 1)]


def test_size_balance_and_kinds() -> None:
    kinds = {k: sum(i.kind == k for i in ITEMS) for k in mk.KINDS}
    assert kinds == {"good": 20, "swapped": 7, "truncated": 7, "cross_domain": 3, "wrong_on_topic": 3}
    assert len(ITEMS) == 40 and sum(i.label == "bad" for i in ITEMS) == 20
    assert all((i.label == "good") == (i.kind == "good") for i in ITEMS)
    assert len({i.id for i in ITEMS}) == len(ITEMS)
    goods = list(GOOD.values())
    domains = {i.domain for i in goods}
    assert {"math", "coding", "qa", "reasoning", "language", "creative_writing", "practical"} <= domains
    assert sum(i.domain == "creative_writing" for i in goods) >= 2
    assert sum(bool(re.search(r"[0-9]", i.output)) for i in goods) >= 4
    assert sum(len(i.output.split()) >= MIN_WORDS_TO_TRUNCATE for i in goods) >= 6


def test_held_out_from_the_judging_set_and_the_seeds() -> None:
    rows = [json.loads(x) for x in make_judging_set.OUT.read_text(encoding="utf-8").splitlines()]
    rows += [json.loads(x) for x in make_judging_set.SEEDS.read_text(encoding="utf-8").splitlines()]
    seen = {r["instruction"].strip() for r in rows} | {r["output"].strip() for r in rows}
    for item in ITEMS:
        assert item.instruction.strip() not in seen, item.id
        assert item.output.strip() not in seen, item.id


def test_each_corruption_is_what_its_kind_says() -> None:
    answers = {i.output: i for i in GOOD.values()}
    assert len(answers) == len(GOOD)  # good answers unique
    sources = []
    for item in ITEMS:
        if item.kind in ("good", "wrong_on_topic"):
            continue
        src = GOOD[(item.instruction, item.input)]
        sources.append(src.id)
        assert item.output != src.output and item.domain == src.domain, item.id
        if item.kind == "truncated":
            words, whole = item.output.split(), src.output.split()
            assert src.output.startswith(item.output) and words == whole[:len(words)], item.id
            assert len(words) < len(whole) and len(item.output) < len(src.output), item.id
        else:
            partner = answers[item.output]  # another good pair's whole answer
            assert partner.instruction != src.instruction, item.id
            assert (partner.domain == src.domain) == (item.kind == "swapped"), item.id
    assert len(set(sources)) == len(sources)  # each from a different good pair


def test_wrong_on_topic_answers_are_new_text() -> None:
    wrong = [i for i in ITEMS if i.kind == "wrong_on_topic"]
    assert all(i.source == mk.SOURCE for i in wrong)
    assert not {i.output for i in wrong} & {g.output for g in GOOD.values()}
    assert not {i.instruction for i in wrong} & {g.instruction for g in GOOD.values()}

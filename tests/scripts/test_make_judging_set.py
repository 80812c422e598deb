"""scripts/make_judging_set.py: the committed labeled set is exactly what the script makes,
balanced, licence-clean by construction (the project's seeds and pairs written for it), and
each bad pair is really what its kind says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import make_heldout_set as mk_heldout  # noqa: E402
import make_judging_set as mk  # noqa: E402

ITEMS = mk.build()
GOOD = {(i.instruction, i.input): i for i in ITEMS if i.label == "good"}


SETS = [mk, mk_heldout]  # both labeled sets: made the same way, checked the same way


@pytest.mark.parametrize("module", SETS, ids=["judging", "heldout"])
def test_the_committed_file_is_what_the_script_makes(module) -> None:
    items = module.build()
    assert module.OUT.read_text(encoding="utf-8") == module.render(items)
    assert module.render(module.build()) == module.render(items)  # deterministic


@pytest.mark.parametrize("module", SETS, ids=["judging", "heldout"])
def test_check_mode_tells_a_stale_file(tmp_path: Path, module) -> None:
    stale = tmp_path / "set.jsonl"
    stale.write_text(module.render(module.build()[:-1]), encoding="utf-8")
    script = [sys.executable, str(Path(module.__file__)), "--check", "--out"]
    proc = subprocess.run([*script, str(stale)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "differs" in proc.stdout
    proc = subprocess.run([*script, str(module.OUT)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "up to date" in proc.stdout


def test_size_balance_and_kinds() -> None:
    kinds = {k: sum(i.kind == k for i in ITEMS) for k in mk.KINDS}
    assert len(ITEMS) >= 60
    assert 0.45 <= kinds["good"] / len(ITEMS) <= 0.55
    assert kinds["wrong_on_topic"] >= 12
    assert all(kinds[k] == n for k, n in mk.CORRUPTIONS.items())
    assert all((i.label == "good") == (i.kind == "good") for i in ITEMS)
    assert len({i.id for i in ITEMS}) == len(ITEMS)
    assert len({i.domain for i in ITEMS if i.label == "good"}) == 7  # every seed domain
    seeds = [json.loads(x) for x in mk.SEEDS.read_text(encoding="utf-8").splitlines()]
    assert {(s["instruction"], s["output"]) for s in seeds} <= {(i.instruction, i.output) for i in GOOD.values()}


def test_each_corruption_is_what_its_kind_says() -> None:
    answers = {i.output: i for i in GOOD.values()}
    for item in ITEMS:
        if item.kind in ("good", "wrong_on_topic"):
            continue
        src = GOOD[(item.instruction, item.input)]
        assert item.output != src.output, item.id
        if item.kind == "truncated":
            assert src.output.startswith(item.output) and len(item.output.split()) < len(src.output.split())
        elif item.kind == "numbers_changed":
            digits = re.compile(r"[0-9]+")
            assert digits.sub("#", item.output) == digits.sub("#", src.output)
        else:
            partner = answers[item.output]  # another good pair's whole answer
            assert partner.instruction != src.instruction
            assert (partner.domain == src.domain) == (item.kind == "swapped"), item.id


def test_wrong_on_topic_answers_are_new_text() -> None:
    wrong = [i for i in ITEMS if i.kind == "wrong_on_topic"]
    assert all(i.source == "written for this set" for i in wrong)
    assert not {i.output for i in wrong} & {g.output for g in GOOD.values()}

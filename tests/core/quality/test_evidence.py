"""Which evidence may decide: standings from pairwise records, likelihood checks with
thresholds set on the canaries, and the panel's place (core.quality.evidence)."""

from __future__ import annotations

import pytest

from gra_local.core.quality.discrimination import Reading, Standing, standing
from gra_local.core.quality.evidence import evidence_of, upper_share, veto_threshold

PMI = "likelihood pmi"
END = "likelihood end_logprob"
SCORES = "reviewer smol: scores"
MEAN = "likelihood mean_logprob"
REL = "relevance"
ARITH = "arithmetic"


def pairs(kind: str, rows: list[tuple[dict[str, float], dict[str, float]]],
          start: int = 0) -> list[Reading]:
    out = []
    for n, (original, corrupted) in enumerate(rows, start):
        out += [Reading(canary=f"o{n}", pair=None, kind="good", values=original),
                Reading(canary=f"c{n}", pair=f"o{n}", kind=kind, values=corrupted)]
    return out


@pytest.mark.parametrize(("wins", "n", "expected"), [
    (3, 3, Standing.INFORMATIVE),  # P(better) 0.94
    (2, 2, Standing.UNSETTLED),  # 0.875: two pairs never decide
    (6, 8, Standing.INFORMATIVE),  # 0.91
    (5, 8, Standing.UNSETTLED),  # P(acc > 0.75) 0.17: could still be useful
    (4, 8, Standing.AT_CHANCE),  # P(acc > 0.75) 0.05
    (3, 6, Standing.UNSETTLED),  # at chance needs 8 pairs, whatever they say
    (0, 0, Standing.UNSETTLED),
])
def test_standing_is_a_statistical_call(wins: float, n: int, expected: Standing) -> None:
    assert standing(wins, n) is expected


def test_veto_threshold_sits_below_the_lowest_original_it_keeps() -> None:
    assert veto_threshold([0.5, 0.8, 0.9], [-0.2, 0.1]) == pytest.approx(0.3)
    assert veto_threshold([0.5], []) is None
    # Overlap: the best balanced accuracy wins, ties to the lower threshold.
    assert veto_threshold([0.2, 0.6, 0.7], [0.1, 0.3, 0.65]) == pytest.approx(0.15)


def test_an_informative_signal_becomes_a_check_the_panel_at_chance_does_not_decide() -> None:
    rows = [({PMI: 0.5 + n / 10, SCORES: 5.0}, {PMI: -0.1 - n / 10, SCORES: 5.0}) for n in range(4)]
    rows += [({PMI: 0.9, SCORES: 4.0}, {PMI: -0.3, SCORES: 6.0})] * 4
    ev = evidence_of(pairs("swapped", rows))
    assert ev.pairs == 8
    assert ev.pieces[PMI].standing == "informative"
    assert [(c.piece, c.kinds) for c in ev.checks] == [(PMI, ("swapped",))]
    assert ev.checks[0].threshold == pytest.approx(0.2)  # halfway from -0.1 up to 0.5
    assert ev.pieces[PMI].threshold == ev.checks[0].threshold
    assert ev.pieces[SCORES].standing == "at_chance"  # 4 ties, 4 losses of 8
    assert not ev.panel_decides and ev.cheap_decides
    assert "no reviewer better than chance on 8 canary pairs" in ev.panel_note()
    assert ev.failing({PMI: 0.1}) == (ev.checks[0], 0.1)
    assert ev.failing({PMI: 0.2}) is None and ev.failing({}) is None


def test_a_signal_informative_on_one_kind_checks_that_kind_only() -> None:
    """end-of-turn catches truncation and nothing else: its threshold is set on the
    truncated canaries, so it does not reject the originals the swaps resemble."""
    trunc = [({END: -1.0 - n / 10}, {END: -9.0}) for n in range(3)]
    swaps = [({END: -1.0}, {END: -0.5}), ({END: -2.0}, {END: -0.1}), ({END: -1.5}, {END: -0.2})]
    ev = evidence_of(pairs("truncated", trunc) + pairs("swapped", swaps, start=3))
    assert ev.pieces[END].standing == "unsettled"  # 3 of 6 overall
    assert [(c.piece, c.kinds) for c in ev.checks] == [(END, ("truncated",))]
    assert ev.checks[0].threshold == pytest.approx(-5.5)  # halfway from -9 up to -2 (an original)
    assert not ev.checks[0].fails(-2.0)


def test_an_informative_reviewer_lets_the_panel_decide() -> None:
    rows = [({SCORES: 9.0}, {SCORES: 3.0})] * 4
    ev = evidence_of(pairs("numbers_changed", rows))
    assert ev.panel_decides and not ev.checks


def test_nothing_informative_on_two_pairs() -> None:
    ev = evidence_of(pairs("swapped", [({PMI: 1.0, SCORES: 9.0}, {PMI: 0.0, SCORES: 3.0})] * 2))
    assert not ev.panel_decides and not ev.cheap_decides
    assert "no reviewer shown better than chance yet on 2 canary pairs" in ev.panel_note()


def test_the_threshold_does_not_move_when_originals_are_bad_answers_of_the_kind() -> None:
    """Review mode: some originals are themselves cut answers. They add the same to both
    shares at every threshold, so the point that separates most is where it was."""
    good = [-1.0, -1.5, -2.0, -3.0, -0.5]
    cut = [-12.0, -20.0, -22.0]
    assert veto_threshold(good, cut) == pytest.approx(-7.5)  # halfway from -3 down to -12
    assert veto_threshold(good + [-21.0, -25.0], cut) == pytest.approx(-7.5)


def test_a_check_pays_for_the_originals_it_may_reject() -> None:
    """A signal that ranks every pair right but moves a value less than originals differ
    from each other (mean log-prob on changed numbers) rejects nothing: the few changed
    answers below every original are one kind of several, and the originals it may reject
    (0 of 16 seen, up to 1 in 7 by the bound) cost more. One far past every original (end
    of turn on a cut answer) is kept."""
    near = [({MEAN: -1.0 - n / 4, END: -1.0}, {MEAN: -1.3 - n / 4, END: -1.0}) for n in range(8)]
    far = [({MEAN: -1.0 - n / 4, END: -1.0 - n / 4}, {MEAN: -1.0 - n / 4, END: -15.0 - n})
           for n in range(8)]
    ev = evidence_of(pairs("numbers_changed", near) + pairs("truncated", far, start=8))
    assert ev.pieces[MEAN].by_kind["numbers_changed"].accuracy == 1.0
    assert [(c.piece, c.kinds) for c in ev.checks] == [(END, ("truncated",))]
    assert ev.checks[0].threshold == pytest.approx(-8.875)  # halfway from -2.75 down to -15
    alone = evidence_of(pairs("numbers_changed", near))  # the only kind: its tail pays
    assert [c.piece for c in alone.checks] == [MEAN]


def test_too_few_originals_for_a_check_that_catches_a_few() -> None:
    """The share of originals rejected counts by its upper bound: on 4 pairs a check that
    catches one corruption in four is not worth what it may reject; on 20 it is."""
    rows = [({END: -1.0}, {END: -1.05}), ({END: -1.1}, {END: -1.15}),
            ({END: -1.2}, {END: -1.25}), ({END: -1.3}, {END: -20.0})]
    assert evidence_of(pairs("truncated", rows)).pieces[END].standing == "informative"
    assert not evidence_of(pairs("truncated", rows)).checks
    assert [c.threshold for c in evidence_of(pairs("truncated", rows * 5)).checks] == [-10.65]
    assert upper_share(0, 4) == pytest.approx(0.369, abs=1e-3)
    assert upper_share(0, 20) == pytest.approx(0.104, abs=1e-3)  # 0 of 20 seen: up to 1 in 10
    assert upper_share(1, 20) > upper_share(0, 20)


def test_in_review_an_original_below_every_corruption_is_one_of_them() -> None:
    """The input's own cut answers, drawn as originals of other corruptions, would make the
    end-of-turn veto pay for rejecting them; in review mode (untrusted originals) one below
    every corruption of the kind is not counted as a good answer lost. With the seeds of
    `run` (trusted) it is, and there the check does not pay."""
    rows = [({END: -1.0 - n / 10}, {END: -15.0 - n}) for n in range(6)]
    cut_inputs = [({END: -30.0}, {END: -0.5})] * 5  # injected text after a cut answer
    readings = pairs("truncated", rows) + pairs("injection", cut_inputs, start=6)
    untrusted = evidence_of(readings, trusted=False)
    assert [(c.threshold, c.typical) for c in untrusted.checks] == [(-8.25, -1.25)]
    assert not evidence_of(readings).checks


def test_the_arithmetic_check_vetoes_unless_its_pairs_show_it_wrong() -> None:
    """A wrong equation is wrong without calibration: the check vetoes from the start and
    stays; canary pairs that rank originals below their corruptions set it aside. It is
    never a threshold check, so it never makes the cheap evidence decide on its own."""
    plain = [({END: -1.0}, {END: -1.0})] * 4
    assert evidence_of(pairs("swapped", plain)).arithmetic_vetoes  # no pair with equations
    right = [({ARITH: 1.0}, {ARITH: 0.0})] * 4
    ev = evidence_of(pairs("numbers_changed", right))
    assert ev.arithmetic_vetoes and not ev.checks and not ev.cheap_decides
    assert evidence_of(pairs("numbers_changed", right[:1])).arithmetic_vetoes  # unsettled
    wrong = [({ARITH: 0.0}, {ARITH: 1.0})] * 4
    assert not evidence_of(pairs("numbers_changed", wrong)).arithmetic_vetoes  # not yet at chance


def test_a_check_is_kept_only_for_what_it_adds() -> None:
    """Two signals that catch the same swapped answers: one vetoes. A signal that catches
    only what relevance already vetoes: none. End of turn catches the truncations the
    others let through: it is kept."""
    swap = ({PMI: 1.0, MEAN: -1.0, END: -1.0, REL: 0.8}, {PMI: -1.0, MEAN: -3.0, END: -1.0, REL: 0.1})
    rows = [swap] * 4  # swaps: low PMI, low mean, low relevance
    trunc = [({PMI: 1.0, MEAN: -1.0, END: -1.0, REL: 0.8}, {PMI: 1.0, MEAN: -1.0, END: -9.0, REL: 0.8})] * 3
    readings = pairs("swapped", rows) + pairs("truncated", trunc, start=4)
    found = evidence_of(readings)  # no relevance veto: the first of PMI and mean, and END
    assert sorted(c.piece for c in found.checks) == [END, MEAN]
    with_relevance = evidence_of(readings, relevance_threshold=0.5)  # it catches the swaps
    assert [c.piece for c in with_relevance.checks] == [END]
    assert with_relevance.pieces[PMI].threshold is None and with_relevance.pieces[END].threshold == -5.0


def test_the_margin_is_the_decision_as_a_score() -> None:
    """Each check's margin is 0 at its threshold and 1 at the typical original; the
    evidence's margin is the smallest over the checks and the relevance veto, so it is
    ≥ 0 exactly when every check passes, and a far-off answer ranks below a near miss."""
    rows = [({PMI: 0.5 + n / 10, REL: 0.7}, {PMI: -0.1 - n / 10, REL: 0.7}) for n in range(8)]
    ev = evidence_of(pairs("swapped", rows))
    check = ev.checks[0]
    assert (check.threshold, check.typical) == (pytest.approx(0.2), pytest.approx(0.85))
    assert check.margin(0.2) == 0 and check.margin(0.85) == pytest.approx(1)
    assert check.margin(-0.45) == pytest.approx(-1)
    for value in (-0.5, 0.19994, 0.19995, 0.19996, 0.2, 0.3):  # the sign is the check, rounding too
        got = ev.margin({PMI: value})
        assert got is not None and (got[0] >= 0) == (ev.failing({PMI: value}) is None)
    assert ev.margin({PMI: -0.45}) == (pytest.approx(-1), PMI)
    assert ev.margin({}) is None
    rel = evidence_of(pairs("swapped", [({REL: 0.8 + n / 100}, {REL: 0.1}) for n in range(8)]))
    assert rel.relevance_decides and rel.relevance_typical == pytest.approx(0.835)
    assert rel.margin({REL: 0.4}, relevance_threshold=0.4) == (0, REL)
    assert rel.margin({REL: 0.3}, relevance_threshold=0.4) == (pytest.approx(-0.1 / 0.435, abs=1e-4), REL)
    assert rel.margin({REL: 0.3}) is None  # no threshold given: the veto is not known

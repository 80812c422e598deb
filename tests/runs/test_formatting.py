"""run.json figures as text: missing values show as a dash, not as "None"."""

from gra_local.runs.formatting import MISSING, num, pct


def test_num_and_pct() -> None:
    assert num(0.8456) == "0.85" and num(8.25, 1) == "8.2" and num(None) == MISSING
    assert pct(0.531) == "53%" and pct(None) == MISSING

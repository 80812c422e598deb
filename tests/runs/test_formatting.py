"""run.json figures as text: missing values show as a dash, not as "None"."""

import ast
from pathlib import Path

import gra_local
from gra_local.runs.formatting import MISSING, num, pct


def test_num_and_pct() -> None:
    assert num(0.8456) == "0.85" and num(8.25, 1) == "8.2" and num(None) == MISSING
    assert num(0.0) == "0.00" and num(-1.5, 0) == "-2"
    assert pct(0.531) == "53%" and pct(0.0) == "0%" and pct(None) == MISSING


def test_one_dash_for_a_missing_value() -> None:
    assert MISSING == "\u2013"  # the en dash
    # the em dash that two copies of the formatter used is gone for good
    root = Path(gra_local.__file__).parent
    strays = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("\u2014", " \u2014", "\u2014 "):
                strays.append(f"{path.relative_to(root)}:{node.lineno}")
    assert strays == []

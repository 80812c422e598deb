"""Arithmetic evidence (`records.Arithmetic`): the equations an answer writes out, worked again.

A small model cannot tell "25 × 4 = 90" from "25 × 4 = 100" (docs/method.md), but the
arithmetic itself can be checked without any model: every chain of numbers and operators
joined by "=" (`12 × 15 = 180`, `3.14 × 3 × 3 = 28.26`, `(3 + 4) × 2 = 14`) is evaluated
and each side compared, to the precision the answer wrote (`1/3 = 0.33` holds).

Only what is surely arithmetic is read: a chain is skipped when a letter or an operator
is glued to it (`2x + 3 = 7`, `r = 3.14 × 9`, `7 = 7x`), when no side has an operator
(`80 = 40` in "50% of 80 = 40"), and anything that does not evaluate (division by zero,
huge powers). An answer with no such chain has no arithmetic evidence at all.

Like every other piece, its value (1 when every equation holds, 0 when one does not) is
evidence, never a decision: the run's canary pairs (changed numbers) measure whether it
tells an original from its corruption, and the decision reads it only then
(core.quality.evidence).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

from gra_local.core.records import Arithmetic

_OPS = {"×": "*", "·": "*", "∙": "*", "÷": "/", "−": "-", "–": "-", "^": "**"}
_NUMBER = r"\d+(?:\.\d+)?"
_TERM = rf"\(*\s*-?\s*{_NUMBER}\s*\)*"
_OPERATOR = r"(?:\*\*|[-+*/])"
_SIDE = rf"{_TERM}(?:\s*{_OPERATOR}\s*{_TERM})*"
_CHAIN = re.compile(rf"{_SIDE}(?:\s*=\s*{_SIDE})+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow}
MAX_EXPONENT = 64
"""A power above this is not evaluated (`9 ** 9 ** 9` would not finish)."""


def check(text: str) -> Arithmetic | None:
    """The equations of `text` worked again; None when it writes none out."""
    plain = _THOUSANDS.sub("", "".join(_OPS.get(ch, ch) for ch in text))
    found = 0
    wrong: list[str] = []
    for match in _CHAIN.finditer(plain):
        chain = match.group()
        start = match.start() + len(chain) - len(chain.lstrip())
        if _glued(plain, start, start + len(chain.strip())):
            continue
        sides = [s.strip() for s in chain.split("=")]
        if not any(re.search(rf"{_NUMBER}\s*{_OPERATOR}", s) for s in sides):
            continue
        values = [_value(s) for s in sides]
        if any(v is None for v in values):
            continue
        found += 1
        first = values[0]
        assert first is not None
        places = [_decimals(s) for s in sides]
        if not all(_same(first, v, min(places[0], p)) for p, v in zip(places, values, strict=True)
                   if v is not None):
            wrong.append(f"{chain.strip()} (the first side is {_show(first)})")
    return Arithmetic(equations=found, wrong=wrong) if found else None


def _glued(text: str, start: int, end: int) -> bool:
    """Something glued to the chain makes it more than plain arithmetic: a letter, digit,
    unit or decimal point touching it (`2x + 3`, `$3`, `7x`, `40%`), or an operator or
    equal sign before or after it across spaces (`r = 3.14 × 9`, `15 = 3 - x`)."""
    touching_before = text[start - 1] if start > 0 else " "
    touching_after = text[end] if end < len(text) else " "
    if touching_before.isalnum() or touching_before in "_.,$€£%^":
        return True
    if touching_after.isalnum() or touching_after in "_($€£%^":
        return True
    before = text[:start].rstrip()[-1:]
    after = text[end:].lstrip()[:1]
    return (before != "" and before in "+-*/=") or (after != "" and after in "+-*/=")


def _value(side: str) -> float | None:
    """The side's value, by Python's grammar restricted to numbers and + − × ÷ and powers."""
    try:
        tree = ast.parse(side, mode="eval")
    except (SyntaxError, ValueError):
        return None
    try:
        return _eval(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError):
        return None


def _eval(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _eval(node.operand)
        return None if inner is None else -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            return None
        value = _BINARY[type(node.op)](left, right)
        return value if isinstance(value, float) and math.isfinite(value) else None
    return None


def _decimals(side: str) -> int:
    """Decimals of a side written as a bare number (the precision it claims); else 9."""
    bare = re.fullmatch(rf"-?\s*({_NUMBER})", side)
    if bare is None:
        return 9
    return len(bare.group(1).partition(".")[2])


def _same(a: float, b: float, decimals: int) -> bool:
    return abs(a - b) <= 0.5 * 10 ** -min(decimals, 9) + 1e-9 * max(abs(a), abs(b))


def _show(value: float) -> str:
    return f"{value:.6g}"

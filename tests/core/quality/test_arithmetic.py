"""The arithmetic check (core.quality.arithmetic): equations an answer writes out, worked
again; only what is surely arithmetic is read."""

from __future__ import annotations

import pytest

from gra_local.core.quality.arithmetic import check


@pytest.mark.parametrize("text", [
    "12 × 15 = 180.",
    "so you need 4 × 3 = 12 eggs.",
    "(3 + 4) × 2 = 14",
    "12 - 15 = -3",
    "12 − 15 = −3",  # typographic minus
    "Step 2: 4 × 3 = 12",
    "2^10 = 1024",
    "1,000 + 2,000 = 3,000",
    "1/3 = 0.33",  # to the precision written
    "0.33 = 1/3",
    "84 ÷ 4 = 21 and 21 · 2 = 42",
])
def test_equations_that_hold(text: str) -> None:
    found = check(text)
    assert found is not None and found.wrong == [] and found.share_right == 1.0


@pytest.mark.parametrize(("text", "wrong"), [
    ("25 × 4 = 90.", "25 * 4 = 90 (the first side is 100)"),
    ("Total: 3 + 4 = 8, so", "3 + 4 = 8 (the first side is 7)"),
    ("1/3 = 0.34 exactly", "1/3 = 0.34 (the first side is 0.333333)"),  # off at 2 decimals
])
def test_equations_that_do_not_hold(text: str, wrong: str) -> None:
    found = check(text)
    assert found is not None and found.wrong == [wrong] and found.share_right == 0.0


def test_the_share_counts_every_equation() -> None:
    found = check("The area is 11 × 2 = 22 square centimetres; the perimeter is 2 × (11 + 2) = 23.")
    assert found is not None and found.equations == 2 and found.share_right == 0.5


@pytest.mark.parametrize("text", [
    "2x + 3 = 7",  # a letter glued on: algebra, not arithmetic
    "3 × 4 = 12x",
    "x = 2 + 3 = 6",  # an equal sign before it: part of something longer
    "pi × r × r = 3.14 × 3 × 3 = 28.26",
    "15 = 3 - x",
    "50% of 80 = 40",  # no side with an operator
    "It costs $3 + 4 = 7",
    "40 + 2 = 42%",
    "v1.2 + 3 = 4.2",
    "9 ** 9 ** 9 = 1",  # too large to work out
    "1 / 0 = 5",
    "((3 + 4) = 7",  # unbalanced
    "The answer is 42.",
    "",
])
def test_what_is_not_surely_arithmetic_is_not_read(text: str) -> None:
    assert check(text) is None

"""Canary generation: deterministic, each corruption really changes the pair, and what the
sources cannot produce is skipped, never faked."""

from __future__ import annotations

import random

from gra_local.core.canaries import (
    CanaryKind,
    CanarySource,
    change_numbers,
    make_canaries,
    truncate,
)

SOURCES = [
    CanarySource(id="s1", instruction="What is 12 times 3?", response="12 times 3 is 36.",
                 domain="math"),
    CanarySource(id="s2", instruction="Write a haiku about rain.",
                 response="Soft rain on the roof, a quiet song for the night, puddles hold the sky.",
                 domain="creative_writing"),
    CanarySource(id="s3", instruction="Reverse a string in Python.",
                 response="Use slicing: text[::-1] returns the string reversed, character by character.",
                 domain="coding"),
    CanarySource(id="s4", instruction="Add 2.5 and 4.", response="2.5 + 4 = 6.5", domain="math"),
]
BY_ID = {s.id: s for s in SOURCES}


def test_deterministic_for_a_seed_and_about_half_good() -> None:
    a = make_canaries(SOURCES, random.Random(7), 10)
    b = make_canaries(SOURCES, random.Random(7), 10)
    assert a == b and len(a) == 10
    assert sum(c.expected_good for c in a) == 5
    assert {c.kind for c in a if c.expected_good} == {CanaryKind.GOOD}


def test_every_corruption_differs_from_its_source() -> None:
    for seed in range(30):
        for c in make_canaries(SOURCES, random.Random(seed), 8):
            src = BY_ID[c.sources[0]]
            assert c.instruction == src.instruction
            if c.kind is CanaryKind.GOOD:
                assert c.response == src.response
                continue
            assert c.response != src.response and not c.expected_good
            if c.kind is CanaryKind.CROSS_DOMAIN:
                assert BY_ID[c.sources[1]].domain != src.domain
            if c.kind is CanaryKind.SWAPPED:
                assert c.response == BY_ID[c.sources[1]].response
            if c.kind is CanaryKind.TRUNCATED:
                assert src.response.startswith(c.response)
                assert len(c.response.split()) <= len(src.response.split()) // 2


def test_numbers_are_all_changed_keeping_their_shape() -> None:
    rng = random.Random(1)
    for _ in range(50):
        out = change_numbers("12 times 3 is 36, or 2.5 + 4 = 6.5", rng)
        old, new = [x for x in "12 3 36 2.5 4 6.5".split()], out.replace(",", "").split()
        nums = [w for w in new if w[0].isdigit()]
        assert len(nums) == 6 and all(a != b for a, b in zip(old, nums, strict=True))
        assert all(("." in a) == ("." in b) for a, b in zip(old, nums, strict=True))
    assert change_numbers("no digits here", rng) == "no digits here"


def test_truncation_cuts_at_word_boundaries_and_skips_short_answers() -> None:
    text = "one two three four five six seven eight nine ten"
    cut = truncate(text, random.Random(0))
    assert cut is not None and text.startswith(cut) and 2 <= len(cut.split()) <= 5
    assert truncate("too short to cut", random.Random(0)) is None


def test_what_cannot_be_made_is_skipped() -> None:
    one = [CanarySource(id="x", instruction="Say hello.", response="Hello!", domain="qa")]
    canaries = make_canaries(one, random.Random(0), 6)
    # One short source without digits: no swap, no cross-domain, no cut, no numbers.
    assert canaries and all(c.kind is CanaryKind.GOOD for c in canaries)
    same_domain = [s.model_copy(update={"domain": "math"}) for s in SOURCES]
    kinds = {c.kind for seed in range(20) for c in make_canaries(same_domain, random.Random(seed), 8)}
    assert CanaryKind.CROSS_DOMAIN not in kinds and CanaryKind.SWAPPED in kinds
    assert make_canaries([], random.Random(0), 4) == []
    assert make_canaries(SOURCES, random.Random(0), 0) == []

#!/usr/bin/env python3
"""Write scripts/judging_set.jsonl, the labeled judging set scripts/bench_judging.py reviews.

Every pair is licence-clean: the good ones are the project's own example seeds
(gra_local/data/example_seeds.jsonl) and pairs written for this set (GOOD below); the bad
ones are code-made corruptions of good pairs (swapped for another answer of the same
domain, cut to 20–50 % of its words, every number changed, an answer from another domain:
core.quality.canaries' truncate and change_numbers, the swaps here) and answers written
for this set that stay on topic but are wrong (WRONG_ON_TOPIC below: a wrong sum, a wrong
capital, buggy code, a false claim), which no embedding of instruction and answer can
tell from right ones. About half the set is good.

Deterministic: the same code and seeds give the same file byte for byte
(tests/scripts/test_make_judging_set.py checks the committed file is what this makes).
Run `python scripts/make_judging_set.py` after editing the pairs; `--check` only compares.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from gra_local.core.quality.canaries import MIN_WORDS_TO_TRUNCATE, change_numbers, truncate

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "gra_local" / "data" / "example_seeds.jsonl"
OUT = Path(__file__).resolve().parent / "judging_set.jsonl"
RNG_SEED = 14
CORRUPTIONS = {"swapped": 6, "truncated": 5, "numbers_changed": 6, "cross_domain": 5}
KINDS = ("good", *CORRUPTIONS, "wrong_on_topic")


class Item(BaseModel):
    """One labeled pair: `label` good/bad, `kind` good or how it was made bad, `source`
    where its instruction and answer came from."""

    id: str
    instruction: str
    input: str = ""
    output: str
    domain: str
    label: str
    kind: str
    source: str


# (domain, instruction, correct answer): written for this set.
GOOD: list[tuple[str, str, str]] = [
    ("math", "What is 7 × 8?", "7 × 8 = 56."),
    ("math", "A shirt costs 40 dollars and is sold at 25% off. What is the sale price?",
     "25% of 40 is 10, so the sale price is 40 − 10 = 30 dollars."),
    ("math", "What is the sum of the interior angles of a triangle?",
     "The interior angles of any triangle add up to 180 degrees."),
    ("math", "Convert 2.5 kilometres to metres.",
     "One kilometre is 1000 metres, so 2.5 kilometres is 2.5 × 1000 = 2500 metres."),
    ("coding", "Write a Python function that returns the largest number in a non-empty list.",
     "def largest(numbers):\n    best = numbers[0]\n    for n in numbers[1:]:\n"
     "        if n > best:\n            best = n\n    return best"),
    ("coding", "What does the SQL statement SELECT COUNT(*) FROM users; return?",
     "It returns a single row holding the number of rows in the users table."),
    ("coding", "Write a Python expression that reverses the string s.",
     "s[::-1] returns a new string with the characters of s in reverse order: a slice with "
     "step -1 walks the string backwards."),
    ("qa", "What is the capital of France?", "The capital of France is Paris."),
    ("qa", "Who wrote the play Romeo and Juliet?",
     "William Shakespeare wrote Romeo and Juliet, in the 1590s."),
    ("qa", "What is the chemical symbol for gold?",
     "The chemical symbol for gold is Au, from its Latin name aurum."),
    ("qa", "How many days are there in a leap year?",
     "A leap year has 366 days, because February gets a 29th day."),
    ("reasoning", "If today is Monday, what day of the week will it be in 10 days?",
     "Ten days is one week plus three days, and three days after Monday is Thursday, so it "
     "will be Thursday."),
    ("reasoning", "A bat and a ball cost 1.10 dollars together, and the bat costs 1.00 dollar "
     "more than the ball. How much does the ball cost?",
     "The ball costs 0.05 dollars. If the ball costs x, the bat costs x + 1.00, so "
     "2x + 1.00 = 1.10 and x = 0.05."),
    ("creative_writing", "Write a one-sentence thank-you note to a neighbour who watered your "
     "plants while you were away.",
     "Thank you so much for watering my plants while I was away; they look happier than "
     "ever, and I owe you a coffee!"),
    ("language", "Give a synonym of the word 'happy'.", "A synonym of 'happy' is 'joyful'."),
    ("language", "Correct the grammar in this sentence: 'She don't like apples.'",
     "The correct sentence is 'She doesn't like apples.': the verb must agree with the "
     "singular subject 'she'."),
    ("creative_writing", "Write a haiku about autumn leaves.",
     "Red leaves drift and fall\nthe cold wind carries them home\nthe branches rest bare"),
]

# (domain, instruction, plausible, on-topic, wrong answer): written for this set.
WRONG_ON_TOPIC: list[tuple[str, str, str]] = [
    ("math", "What is 9 + 6?", "9 + 6 = 14."),
    ("math", "What is the square root of 81?", "The square root of 81 is 8, because 8 × 8 = 81."),
    ("math", "A train travels at 60 kilometres per hour for 3 hours. How far does it go?",
     "It goes 60 + 3 = 63 kilometres."),
    ("math", "How many sides does a hexagon have?", "A hexagon has eight sides."),
    ("math", "Is 17 a prime number?", "No, 17 is not a prime number: it is divisible by 3."),
    ("qa", "What is the capital of Australia?",
     "The capital of Australia is Sydney, its largest city."),
    ("qa", "Which planet is the largest in the solar system?",
     "Saturn is the largest planet in the solar system."),
    ("qa", "At what temperature does water boil at sea level, in degrees Fahrenheit?",
     "Water boils at 100 degrees Fahrenheit at sea level."),
    ("qa", "Who painted the Mona Lisa?", "The Mona Lisa was painted by Michelangelo in the early 1500s."),
    ("qa", "In what year did the Second World War end?", "The Second World War ended in 1951."),
    ("qa", "What gas do humans need to breathe in to stay alive?",
     "Humans need to breathe in carbon dioxide; the lungs pass it into the blood."),
    ("coding", "Write a Python function that returns the sum of a list of numbers.",
     "def total(numbers):\n    result = 0\n    for n in numbers:\n        result = n\n"
     "    return result"),
    ("coding", "Write a Python function that checks whether an integer is even.",
     "def is_even(n):\n    return n % 2 == 1"),
    ("coding", "Write a Python function that returns the last element of a list.",
     "def last(items):\n    return items[1]"),
    ("reasoning", "All cats are mammals, and Tom is a cat. Is Tom a mammal?",
     "No. Knowing that Tom is a cat tells us nothing about whether he is a mammal."),
    ("reasoning", "Which is heavier, a kilogram of feathers or a kilogram of iron?",
     "A kilogram of iron is heavier, because iron is denser than feathers."),
    ("language", "What is the past tense of the verb 'go'?", "The past tense of 'go' is 'goed'."),
]


def good_items() -> list[Item]:
    items = []
    for n, line in enumerate(SEEDS.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        items.append(Item(id="", instruction=row["instruction"], input=row.get("input", ""),
                          output=row["output"], domain=row["domain"], label="good", kind="good",
                          source=f"example_seeds.jsonl line {n}"))
    items += [Item(id="", instruction=i, output=o, domain=d, label="good", kind="good",
                   source="written for this set") for d, i, o in GOOD]
    return items


def _feasible(kind: str, src: Item, goods: list[Item]) -> bool:
    if kind == "truncated":
        return len(src.output.split()) >= MIN_WORDS_TO_TRUNCATE
    if kind == "numbers_changed":
        return change_numbers(src.output, random.Random(0)) != src.output
    return bool(_partners(kind, src, goods))


def _partners(kind: str, src: Item, goods: list[Item]) -> list[Item]:
    """Pairs whose answer can replace src's: same domain (swapped) or another (cross_domain)."""
    same = kind == "swapped"
    return [g for g in goods if g.instruction != src.instruction and g.output != src.output
            and (g.domain == src.domain) == same]


def corrupted_items(goods: list[Item], rng: random.Random,
                    corruptions: dict[str, int] | None = None) -> list[Item]:
    """corruptions[kind] (default CORRUPTIONS) bad pairs of each kind, each from a different
    good pair where the good pairs allow it (numbers_changed prefers math pairs: numbers
    matter most there)."""
    order = rng.sample(goods, len(goods))
    used: set[str] = set()
    out = []
    for kind, count in (CORRUPTIONS if corruptions is None else corruptions).items():
        pool = [g for g in order if _feasible(kind, g, goods)]
        if kind == "numbers_changed":
            pool.sort(key=lambda g: g.domain != "math")  # stable: math first, rng order kept
        fresh = [g for g in pool if g.source + g.instruction not in used]
        for src in (fresh + [g for g in pool if g not in fresh])[:count]:
            used.add(src.source + src.instruction)
            source = src.source
            if kind == "truncated":
                cut = truncate(src.output, rng)
                assert cut is not None
                output = cut
            elif kind == "numbers_changed":
                output = change_numbers(src.output, rng)
            else:
                partner = rng.choice(_partners(kind, src, goods))
                output = partner.output
                source = f"{src.source}; answer from {partner.source}"
            out.append(src.model_copy(update={"output": output, "label": "bad", "kind": kind,
                                              "source": source}))
    return out


def build() -> list[Item]:
    """The whole set, in a fixed shuffled order (so the review batches mix kinds), with ids
    j-001… in that order."""
    rng = random.Random(RNG_SEED)
    goods = good_items()
    bad = corrupted_items(goods, rng)
    bad += [Item(id="", instruction=i, output=o, domain=d, label="bad", kind="wrong_on_topic",
                 source="written for this set") for d, i, o in WRONG_ON_TOPIC]
    items = goods + bad
    rng.shuffle(items)
    return [item.model_copy(update={"id": f"j-{n:03d}"}) for n, item in enumerate(items, 1)]


def render(items: list[Item]) -> str:
    return "".join(json.dumps(item.model_dump(), ensure_ascii=False) + "\n" for item in items)


def main(make: Callable[[], list[Item]] = build, out: Path = OUT, kinds: tuple[str, ...] = KINDS,
         description: str = (__doc__ or "").splitlines()[0]) -> int:
    """The command line: writes (or with --check compares) what `make` builds; the defaults
    are this set's, another set's script passes its own."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help="only say whether the file is up to date")
    ap.add_argument("--out", type=Path, default=out, help=f"where to write (default {out.name})")
    args = ap.parse_args()
    items = make()
    text = render(items)
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from what this script makes'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    counts = {k: sum(i.kind == k for i in items) for k in kinds}
    print(f"{args.out}: {len(items)} pairs, "
          + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write scripts/heldout_set.jsonl, a held-out labeled judging set beside scripts/judging_set.jsonl.

What it is for: the judging defaults (prompts, thresholds, weights) were chosen looking at
judging_set.jsonl; this set is held out from that. None of its instructions or answers is in
judging_set.jsonl or in the example seeds (gra_local/data/example_seeds.jsonl), and nobody
tuned anything on it, so its figures (balanced accuracy, AUC per kind) check that the
defaults were not fitted to judging_set: a default that does well there and much worse here
was tuned to the set, not to the task.

How it is made: 20 good pairs written for this set (GOOD below: math, coding, general
knowledge, reasoning, language, creative writing, everyday how-to; answers of one sentence
to a few, one short function, a haiku and a two-sentence story, on which embedding-based
relevance is known to be weak) and 20 bad ones: 17 code-made corruptions of the good pairs,
each from a different good pair (make_judging_set.corrupted_items: 7 answers swapped for
another answer of the same domain, 7 cut to 20–50 % of their words by
core.quality.canaries.truncate, 3 answers from another domain), and 3 answers written for
this set that stay on topic but are wrong (WRONG_ON_TOPIC below). Ids h-001… follow a fixed
shuffled order of its own (RNG_SEED).

Licence-clean: every instruction and answer was written for this set.

Deterministic: the same code gives the same file byte for byte
(tests/scripts/test_make_heldout_set.py checks the committed file is what this makes).
Run `python scripts/make_heldout_set.py` after editing the pairs; `--check` only compares.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
import make_judging_set as mk  # noqa: E402
from make_judging_set import Item, render  # noqa: E402

__all__ = ["CORRUPTIONS", "GOOD", "KINDS", "OUT", "WRONG_ON_TOPIC", "Item", "build", "main", "render"]

OUT = Path(__file__).resolve().parent / "heldout_set.jsonl"
RNG_SEED = 2027
SOURCE = "written for heldout set"
CORRUPTIONS = {"swapped": 7, "truncated": 7, "cross_domain": 3}
KINDS = ("good", *CORRUPTIONS, "wrong_on_topic")

# (domain, instruction, correct answer): written for this set.
GOOD: list[tuple[str, str, str]] = [
    ("math", "What is 12 × 15?", "12 × 15 = 180."),
    ("math", "A recipe needs 3 eggs for every 2 cups of flour. How many eggs are needed for 8 cups "
     "of flour?",
     "8 cups is 4 times 2 cups, so you need 4 × 3 = 12 eggs."),
    ("math", "What is the area of a circle with a radius of 3 metres? Use 3.14 for pi.",
     "The area is pi × r × r = 3.14 × 3 × 3 = 28.26 square metres."),
    ("math", "Simplify the fraction 18/24.",
     "Both 18 and 24 are divisible by 6, so 18/24 simplifies to 3/4."),
    ("coding", "Write a Python function that counts the vowels in a string.",
     "def count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in \"aeiou\")"),
    ("coding", "What is the difference between a list and a tuple in Python?",
     "A list is mutable: you can add, remove or change its elements after creating it. A tuple "
     "is immutable, so its contents are fixed once it is made. Because of that, a tuple can be "
     "used as a dictionary key and a list cannot."),
    ("coding", "What does the command git status show?",
     "It shows the state of the working tree and the staging area: which files are modified, "
     "which changes are staged for the next commit, and which files are untracked."),
    ("qa", "What is the largest ocean on Earth?",
     "The Pacific Ocean is the largest ocean on Earth; it covers about a third of the planet's "
     "surface."),
    ("qa", "How many bones are there in the adult human body?",
     "An adult human body has 206 bones."),
    ("qa", "Who developed the theory of general relativity?",
     "Albert Einstein developed the theory of general relativity and published it in 1915."),
    ("qa", "Why is the sky blue on a clear day?",
     "Sunlight is a mix of many colours. As it passes through the atmosphere, air molecules "
     "scatter the short blue wavelengths far more than the longer red ones, so blue light "
     "reaches our eyes from every part of the sky."),
    ("reasoning", "If 5 machines take 5 minutes to make 5 widgets, how long do 100 machines take "
     "to make 100 widgets?",
     "It takes 5 minutes. Each machine makes one widget in 5 minutes, so 100 machines working "
     "at the same time make 100 widgets in those same 5 minutes."),
    ("reasoning", "Sara has three brothers, and each of her brothers has two sisters. How many "
     "daughters are in the family?",
     "There are two daughters. Each brother's two sisters are Sara and one other girl, so the "
     "family has two daughters in all."),
    ("reasoning", "A clock shows 3:15. What is the angle between the hour hand and the minute hand?",
     "The angle is 7.5 degrees. The minute hand points at the 3, while the hour hand has moved a "
     "quarter of the way from the 3 to the 4, and a quarter of the 30 degrees between them is "
     "7.5 degrees."),
    ("language", "What is the plural of the word 'mouse' when it means the animal?",
     "The plural is 'mice'."),
    ("language", "Explain the difference between 'affect' and 'effect'.",
     "'Affect' is usually a verb meaning to influence something, as in 'The rain affected the "
     "match.' 'Effect' is usually a noun meaning a result, as in 'The rain had a big effect on "
     "the match.'"),
    ("creative_writing", "Write a haiku about snow falling on a quiet city.",
     "Snow on empty streets\nthe streetlights hum soft and gold\nthe whole city sleeps"),
    ("creative_writing", "Write a two-sentence story about a lighthouse keeper.",
     "For forty years the keeper climbed the tower each night to light the lamp, though no ship "
     "had passed in a decade. On his last night, a small boat lost in the fog followed his beam "
     "safely home, and its captain climbed the stairs to thank him."),
    ("practical", "How long should I boil an egg to get a soft, runny yolk?",
     "Lower the egg into water that is already boiling and cook it for about 6 minutes, then put "
     "it in cold water for a minute to stop the cooking. The white will be set and the yolk "
     "still runny."),
    ("practical", "How can I get rid of a bad smell in my fridge?",
     "Throw out anything spoiled, wipe the shelves with warm water mixed with a little baking "
     "soda, and leave an open box of baking soda inside to soak up odours. Replace the box every "
     "three months or so."),
]

# (domain, instruction, plausible, on-topic, wrong answer): written for this set.
WRONG_ON_TOPIC: list[tuple[str, str, str]] = [
    ("math", "What is 25 × 4?", "25 × 4 = 90."),
    ("qa", "Who was the first person to walk on the Moon?",
     "Yuri Gagarin was the first person to walk on the Moon, in 1969."),
    ("coding", "Write a Python function that returns the average of a list of numbers.",
     "def average(numbers):\n    return sum(numbers) / 2"),
]


def good_items() -> list[Item]:
    """GOOD as items; each source names its place in GOOD (1-based) so a bad pair's source
    says which good pairs it was made from."""
    return [Item(id="", instruction=i, output=o, domain=d, label="good", kind="good",
                 source=f"{SOURCE} #{n}") for n, (d, i, o) in enumerate(GOOD, 1)]


def build() -> list[Item]:
    """The whole set, in a fixed shuffled order (so the review batches mix kinds), with ids
    h-001… in that order."""
    rng = random.Random(RNG_SEED)
    goods = good_items()
    bad = mk.corrupted_items(goods, rng, CORRUPTIONS)
    bad += [Item(id="", instruction=i, output=o, domain=d, label="bad", kind="wrong_on_topic",
                 source=SOURCE) for d, i, o in WRONG_ON_TOPIC]
    items = goods + bad
    rng.shuffle(items)
    return [item.model_copy(update={"id": f"h-{n:03d}"}) for n, item in enumerate(items, 1)]


def main() -> int:
    return mk.main(build, OUT, KINDS, (__doc__ or "").splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())

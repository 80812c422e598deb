"""Drawing generator, reviewer panel and adjudicators for one sample (docs/method.md).

Roles are re-drawn per sample from a seeded RNG. With fewer models than roles, draws
repeat models as little as possible and say so (`shared`), so one embedded model can
still run the whole method.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RoleDraw:
    generator: str
    panel: list[str]
    adjudicators: list[str]  # preference order: first one not already in the sample
    replacements: list[str] = field(default_factory=list)  # reviewers to draw on failures
    shared: bool = False


def _fill(rng: random.Random, preferred: list[str], fallback: list[str], k: int,
          used: Counter[str]) -> tuple[list[str], bool]:
    """k names: distinct preferred ones first, then the least-used fallbacks."""
    picks = rng.sample(preferred, min(k, len(preferred)))
    shared = False
    while len(picks) < k:
        if not fallback:
            raise ValueError("no model can play this role")
        counts = Counter(picks) + used
        least = min(counts[n] for n in fallback)
        choices = [n for n in fallback if counts[n] == least]
        picks.append(rng.choice(sorted(choices)))
        shared = True
    return picks, shared


def draw_roles(rng: random.Random, generators: list[str], reviewers: list[str],
               adjudicators: list[str], panel_size: int) -> RoleDraw:
    """Generator uniformly at random; a panel without the generator; adjudicators that are
    neither generator nor reviewer first, then the rest."""
    if not generators or not reviewers or not adjudicators:
        raise ValueError("every role needs at least one model")
    generator = rng.choice(sorted(generators))
    others = sorted(r for r in reviewers if r != generator)
    panel, shared = _fill(rng, others, sorted(reviewers), panel_size, Counter({generator: 1}))
    taken = {generator, *panel}
    fresh = sorted(a for a in adjudicators if a not in taken)
    rest = sorted(a for a in adjudicators if a in taken)
    rng.shuffle(fresh)
    rng.shuffle(rest)
    adj = fresh + rest
    if not fresh:
        shared = True
    spare = sorted(r for r in reviewers if r not in taken)
    rng.shuffle(spare)
    # On a failed reviewer, prefer an unused model, then any reviewer (a repeat).
    replacements = spare + sorted(reviewers, key=lambda n: (n == generator, n))
    return RoleDraw(generator, panel, adj, replacements, shared)

"""Small helpers shared by the seed loader tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

from gra_local.core.seeds.scan import Seed, iter_seeds, scan_seeds


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def seeds_of(path: Path) -> list[Seed]:
    return [item for item in iter_seeds(path) if isinstance(item, Seed)]


def scan(path: Path, keep: int = 100, seed: int = 0):
    return scan_seeds(path, keep, random.Random(seed))

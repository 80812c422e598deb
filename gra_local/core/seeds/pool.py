"""The generator's example pool: annotated seeds, then the samples later rounds kept."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from gra_local.core.records import Example


class PoolEntry(BaseModel):
    """One (keywords, summary) example the generator can draw on."""

    source: str  # "seed line 12" or a record id
    round: int  # 0 for seeds, else the round that accepted it
    instruction: str
    domain: str
    keywords: list[str]
    summary: str
    response: str = ""
    """The seed's own response, kept for canaries (empty for pools written before it)."""
    annotator: str | None = None
    """Who wrote domain, keywords and summary; None: the seed file or the generator's own."""

    @property
    def example(self) -> Example:
        return Example(domain=self.domain, keywords=self.keywords, summary=self.summary,
                       instruction=self.instruction)


@dataclass
class PoolCheck:
    """What a pool file holds: its valid entries, and what is wrong with it."""

    entries: list[PoolEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Empty when the pool can be used as it is."""
    seeds_complete: bool = False
    """Every seed entry the run wrote is here (known from run.json): damage hit only what
    rounds added, so the seeds need no rebuild; the rounds' lost entries are annotated again."""

    @property
    def seeds(self) -> list[PoolEntry]:
        return [e for e in self.entries if e.round == 0]

    @property
    def later(self) -> list[PoolEntry]:
        """What rounds added: kept when the seed part is rebuilt."""
        return [e for e in self.entries if e.round > 0]

    def warning(self, path: object) -> str:
        more = f" and {len(self.problems) - 1} more problem(s)" if len(self.problems) > 1 else ""
        done = ("its seeds are all there: rewritten with its valid entries; samples of later "
                "rounds it lost are annotated again" if self.seeds_complete else
                "rebuilt from the seeds (their annotations are cached), keeping its valid "
                "entries of later rounds")
        return f"{path}: damaged ({self.problems[0]}{more}); {done}"


def check_pool(rows: Iterable[tuple[int, object]], problems: Iterable[str],
               seeds_expected: int | None) -> PoolCheck:
    """Validate a pool file's rows ((line, object), as journal.scan_jsonl reads them; its
    `problems` are carried over). `seeds_expected`: how many seed entries the run wrote
    (run.json's seeds.pool), when known. A pool with no seed entries is always damaged:
    the generator could draw no examples from it."""
    check = PoolCheck(problems=list(problems))
    for line, row in rows:
        try:
            check.entries.append(PoolEntry.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"])) or "the line"
            check.problems.append(f"line {line}: not a pool entry ({where}: {err['msg']})")
    seeds = len(check.seeds)
    if not check.entries and not check.problems:
        check.problems.append("empty")
    elif not seeds:
        check.problems.append("no seed entries")
    elif seeds_expected and seeds != seeds_expected:
        check.problems.append(f"{seeds} seed entries where the run wrote {seeds_expected}")
    check.seeds_complete = bool(seeds_expected) and seeds == seeds_expected
    return check

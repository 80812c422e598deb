"""The generator's example pool: annotated seeds, then the samples later rounds kept."""

from __future__ import annotations

from pydantic import BaseModel

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

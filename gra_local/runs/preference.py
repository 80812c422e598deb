"""Preference pairs and the contested split for `gra-local export`.

A preference pair puts an accepted response (chosen) against a rejected one for the same
keyword triple: the triple is what the generator was asked to write about, so two
samples with the same triple are two attempts at the same topic. Triples are compared
normalised (each keyword stripped and lowercased, then sorted), after decision
overrides are applied.

Only rejected responses that were judged low can be the rejected side: reasons
`low_score` and `adjudicated_reject`, or an accepted record a person overrode to
rejected. `duplicate` is left out (the panel passed it), and so are `instruction_failed`,
`generation_failed`, `review_failed`, `adjudication_failed` and `too_long`: their
instruction was bad or their response was never scored. Unverified records (no evidence
could judge them) are on neither side, unless a person overrode one: they were neither
accepted nor found wanting.

Pairing: every judged rejected response of a triple is paired once, with the triple's
best accepted response, preferring an accepted response to the same instruction when
there is one, and otherwise the highest μ (earliest record on ties). A chosen response
may therefore appear in several pairs; a rejected one appears in exactly one.

The contested split is every adjudicated sample (`adjudicated_accept`,
`adjudicated_reject`): the panel disagreed (σ > δ) and the adjudicator decided.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict

from gra_local.core.errors import OutputError

# Not "duplicate": the panel passed those (μ ≥ τ); as a rejected side they would teach
# the model to avoid good answers.
JUDGED_REJECT_REASONS: tuple[str, ...] = ("low_score", "adjudicated_reject")
CONTESTED_REASONS: tuple[str, ...] = ("adjudicated_accept", "adjudicated_reject")
PAIRING_RULE = ("each judged rejected response (low_score, adjudicated_reject, or "
                "overridden to rejected) is paired once with the best accepted response of "
                "the same keyword triple (normalised: stripped, lowercased, sorted): one "
                "written for the same instruction if there is one, else the highest μ")

Key = tuple[str, ...]


class NoPreferencePairs(OutputError):
    """`--format preference` found no keyword triple with both an accepted and a judged
    rejected response; the message gives the counts that explain why."""


class PreferencePair(BaseModel):
    """One line of a preference export, as DPO-style trainers read it (prompt, chosen,
    rejected) plus where it came from."""

    model_config = ConfigDict(extra="forbid")

    prompt: str  # the chosen record's instruction
    chosen: str
    rejected: str
    chosen_id: str
    rejected_id: str
    rejected_instruction: str  # may differ from prompt: same triple, another instruction
    keywords: list[str]  # the normalised triple
    chosen_score: float | None  # μ of the panel
    rejected_score: float | None
    domain: str  # the chosen record's


class PairingStats(BaseModel):
    """How the pairs were formed; the dataset card prints these."""

    model_config = ConfigDict(extra="forbid")

    triples: int = 0  # distinct normalised triples among the candidates
    triples_paired: int = 0
    accepted_candidates: int = 0  # accepted with a response, at or above --min-score
    chosen_below_min_score: int = 0
    chosen_used: int = 0  # distinct accepted responses used as chosen
    judged_rejected: int = 0
    rejected_unpaired: int = 0  # judged rejected whose triple has no accepted candidate
    left_out: dict[str, int] = {}  # rejected, never judged: reason → count
    same_instruction: int = 0  # pairs whose chosen and rejected share the instruction
    pairs: int = 0


class PreferenceSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[PreferencePair]
    stats: PairingStats
    chosen_records: list[dict[str, Any]]  # the accepted records used, for the card


def keyword_key(record: dict) -> Key:
    """The record's keyword triple, normalised; () when it has none."""
    keywords = record.get("keywords")
    if not isinstance(keywords, list):
        return ()
    return tuple(sorted(k for k in (str(w).strip().lower() for w in keywords) if k))


def _has_response(record: dict) -> bool:
    response = record.get("response")
    return isinstance(response, str) and bool(response.strip())


def _score(record: dict) -> float | None:
    mean = record.get("mean")
    return None if mean is None else float(mean)


def _same_text(a: Any, b: Any) -> bool:
    return " ".join(str(a).split()).casefold() == " ".join(str(b).split()).casefold()


def is_judged_rejection(record: dict) -> bool:
    """A rejected record whose response was scored and found wanting (or that a person
    overrode to rejected). An unverified record never is: nothing judged it."""
    if not _has_response(record) or record.get("decision") == "unverified":
        return False
    return record.get("override") is not None or record.get("reason") in JUDGED_REJECT_REASONS


def _best(candidates: list[dict], rejected: dict) -> dict:
    same = [c for c in candidates if _same_text(c.get("instruction"), rejected.get("instruction"))]
    pool = same or candidates  # candidates are sorted best first
    return pool[0]


def build_pairs(accepted: list[dict], rejected: list[dict],
                min_score: float | None = None) -> PreferenceSet:
    """Pairs from records whose decisions already include overrides (an overridden record
    carries its override under `override`). Records are taken in the order given; an
    unverified one is never chosen."""
    stats = PairingStats()
    chosen_by_key: dict[Key, list[tuple[int, dict]]] = defaultdict(list)
    for index, rec in enumerate(accepted):
        key = keyword_key(rec)
        if not key or not _has_response(rec) or rec.get("decision") == "unverified":
            continue
        score = _score(rec)
        if min_score is not None and (score is None or score < min_score):
            stats.chosen_below_min_score += 1
            continue
        chosen_by_key[key].append((index, rec))
        stats.accepted_candidates += 1
    ranked: dict[Key, list[dict]] = {
        key: [r for _, r in sorted(items, key=lambda it: (-(_score(it[1]) or float("-inf")), it[0]))]
        for key, items in chosen_by_key.items()}

    left_out: Counter[str] = Counter()
    rejected_keys: set[Key] = set()
    pairs: list[PreferencePair] = []
    chosen_ids: dict[str, dict] = {}
    paired_keys: set[Key] = set()
    for rec in rejected:
        key = keyword_key(rec)
        if not key or not is_judged_rejection(rec):
            left_out["no keywords" if not key else str(rec.get("reason") or "unknown")] += 1
            continue
        stats.judged_rejected += 1
        rejected_keys.add(key)
        candidates = ranked.get(key)
        if not candidates:
            stats.rejected_unpaired += 1
            continue
        best = _best(candidates, rec)
        chosen_ids.setdefault(str(best["id"]), best)
        paired_keys.add(key)
        same = _same_text(best.get("instruction"), rec.get("instruction"))
        stats.same_instruction += int(same)
        pairs.append(PreferencePair(
            prompt=str(best["instruction"]), chosen=str(best["response"]),
            rejected=str(rec["response"]), chosen_id=str(best["id"]), rejected_id=str(rec["id"]),
            rejected_instruction=str(rec.get("instruction") or ""), keywords=list(key),
            chosen_score=_score(best), rejected_score=_score(rec),
            domain=str(best.get("domain") or "")))
    stats.triples = len(set(ranked) | rejected_keys)
    stats.triples_paired = len(paired_keys)
    stats.chosen_used = len(chosen_ids)
    stats.left_out = dict(sorted(left_out.items()))
    stats.pairs = len(pairs)
    return PreferenceSet(pairs=pairs, stats=stats, chosen_records=list(chosen_ids.values()))


def no_pairs_message(where: str, stats: PairingStats, min_score: float | None) -> str:
    """One line saying why no pair could be formed."""
    parts = [f"{stats.accepted_candidates} accepted response(s) and {stats.judged_rejected} "
             f"judged rejected response(s) (low_score, adjudicated_reject) over "
             f"{stats.triples} keyword triple(s)"]
    if stats.chosen_below_min_score:
        parts.append(f"{stats.chosen_below_min_score} accepted below --min-score {min_score}")
    if stats.left_out:
        reasons = ", ".join(f"{reason} {n}" for reason, n in stats.left_out.items())
        parts.append(f"rejected but never judged, left out: {reasons}")
    return (f"{where}: no preference pairs: no keyword triple has both an accepted and a "
            f"rejected judged response ({'; '.join(parts)})")


# --- the contested split -------------------------------------------------------------


def contested(records: list[dict]) -> list[dict]:
    """Adjudicated samples (accepted and rejected), in the order given."""
    return [r for r in records if r.get("reason") in CONTESTED_REASONS]


def contested_row(record: dict) -> dict:
    """A contested sample for the preference export's `.contested` file: the sample, the
    decision (overrides applied), the panel's scores, μ, σ and the adjudicator's score."""
    adjudication = record.get("adjudication") or {}
    return {
        "id": record.get("id"), "instruction": record.get("instruction"),
        "response": record.get("response"), "domain": record.get("domain"),
        "keywords": record.get("keywords"), "decision": record.get("decision"),
        "reason": record.get("reason"),
        "reviewer_scores": [{"model": r.get("model"), "score": r.get("score")}
                            for r in record.get("reviews") or []],
        "mean": record.get("mean"), "std": record.get("std"),
        "adjudicator": adjudication.get("model") or record.get("adjudicator"),
        "adjudicator_score": adjudication.get("score"),
        "override": record.get("override"),
    }


def preference_card_lines(stats: PairingStats) -> list[str]:
    lines = ["## Preference pairs", "", f"Pairing: {PAIRING_RULE}.", "",
             "Each line has `prompt` (the chosen record's instruction), `chosen`, `rejected`, "
             "`chosen_id`, `rejected_id`, `rejected_instruction`, `keywords`, `chosen_score`, "
             "`rejected_score` (μ) and `domain`. `--min-score` applies to the chosen side.", "",
             "| | count |", "|---|---|",
             f"| pairs | {stats.pairs} |",
             f"| pairs with the same instruction on both sides | {stats.same_instruction} |",
             f"| keyword triples | {stats.triples} |",
             f"| keyword triples paired | {stats.triples_paired} |",
             f"| accepted candidates | {stats.accepted_candidates} |",
             f"| accepted used as chosen | {stats.chosen_used} |",
             f"| accepted below --min-score | {stats.chosen_below_min_score} |",
             f"| judged rejected | {stats.judged_rejected} |",
             f"| judged rejected without an accepted response in their triple | {stats.rejected_unpaired} |"]
    lines += [f"| left out: {reason} | {n} |" for reason, n in stats.left_out.items()]
    return lines

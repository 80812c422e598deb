"""Token-choice probes (`Job.probe_after`, `Outcome.choices`) on the real embedded
SmolLM2-135M: at a score or verdict position the decoder reports the distribution over the
grammar-allowed tokens, at the offset of the chosen token in the text, and probing changes
no sampled byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from gra_local.backends.llama.decode import Decoder
from gra_local.backends.llama.jobs import Job, Outcome
from gra_local.backends.llama.process import LlamaProcessBackend
from gra_local.core.backend import ChatRequest, TokenChoice
from gra_local.core.config import ModelSpec
from gra_local.core.grammars import parse_json, scores_grammar, token_budget, verdict_grammar
from gra_local.core.records import SCORE_FIELDS, VERDICT_FIELDS, InstructionVerdict, Scores

pytestmark = pytest.mark.e2e
llama_cpp = pytest.importorskip("llama_cpp")

SYSTEM = "You are a strict reviewer. Read the instruction and the response, then answer with JSON only."
USERS = ["Instruction: What is 2+2?\nResponse: 4.\nJudge it.",
         "Instruction: Name a prime.\nResponse: 9 is prime.\nJudge it.",
         "Instruction: Write a haiku about rain.\nResponse: Rain falls softly down.\nJudge it."]
SCORE_PROBE, VERDICT_PROBE = '": ', '": "'


def messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def decoder(smol_model: Path) -> Decoder:
    from gra_local.backends.llama.prompt import load_llama

    llm = load_llama(str(smol_model), kv_cells=4096, n_parallel=4, n_gpu_layers=0,
                     n_threads=1, chat_format=None, seed=0, verbose=False)
    return Decoder(llm, 4, 2048)


def jobs(d: Decoder, probes: bool) -> list[Job]:
    from gra_local.backends.llama.prompt import chat_prompt

    out = []
    for seed, user in enumerate(USERS):
        tokens, stop = chat_prompt(d.llm, messages(user))
        for grammar, probe, out_type in ((scores_grammar(), SCORE_PROBE, Scores), (verdict_grammar(), VERDICT_PROBE, InstructionVerdict)):
            out.append(Job(tokens=tokens, stop=stop, max_tokens=token_budget(out_type), temperature=0.7, top_p=0.9,
                           seed=seed, grammar=grammar, probe_after=[probe.encode()] if probes else []))
    return out


def decode(smol_model: Path, probes: bool) -> list[Outcome]:
    """On a fresh decoder each time: the same calls give the same texts only there."""
    d = decoder(smol_model)
    try:
        return d.run(jobs(d, probes))
    finally:
        d.close()
        d.llm.close()


@pytest.fixture(scope="module")
def probed(smol_model: Path) -> list[Outcome]:
    return decode(smol_model, probes=True)


def check_distribution(probs: dict[str, float]) -> None:
    assert probs and all(p >= 0.001 for p in probs.values()), probs
    assert 0.9 <= sum(probs.values()) <= 1.0 + 1e-6, probs


def test_a_scores_reply_reports_each_scores_distribution(probed: list[Outcome]) -> None:
    for outcome in probed[0::2]:
        text = outcome.text
        parse_json(text, Scores, outcome.finish_reason)
        seen, follows, prev = [], 0, None
        for c in outcome.choices:
            check_distribution(c.probs)
            before = text[:c.offset]
            field = next((f for f in SCORE_FIELDS if before.endswith(f'"{f}": ')), None)
            if field is not None:  # the first digit of a score
                seen.append(field)
                assert set(c.probs) <= set("0123456789"), c.probs
            elif prev is not None and text[prev.offset:c.offset].isdigit():  # a further digit
                follows += 1
                assert all(k == "0" or k.startswith(",") for k in c.probs), c.probs
            else:  # the feedback key ends with '": ' too where a token ends there
                assert before.endswith('"feedback": '), before
                assert all(k.startswith('"') for k in c.probs), c.probs
            assert any(text.startswith(k, c.offset) for k in c.probs), (text[c.offset:], c.probs)
            prev = c
        assert seen == list(SCORE_FIELDS), text
        assert follows >= len(SCORE_FIELDS)  # each score's digit is followed by a probe
        assert [c.offset for c in outcome.choices] == sorted({c.offset for c in outcome.choices})


def test_a_verdict_reply_reports_pass_or_fail_per_field(probed: list[Outcome]) -> None:
    for outcome in probed[1::2]:
        text = outcome.text
        parse_json(text, InstructionVerdict, outcome.finish_reason)
        assert len(outcome.choices) == len(VERDICT_FIELDS), (text, outcome.choices)
        for c, field in zip(outcome.choices, VERDICT_FIELDS, strict=True):
            assert text[:c.offset].endswith(f'"{field}": "'), text[:c.offset]
            check_distribution(c.probs)
            assert all("pass".startswith(k) or "fail".startswith(k) for k in c.probs), c.probs
            assert any(text.startswith(k, c.offset) for k in c.probs), (text[c.offset:], c.probs)


def test_probes_change_no_sampled_byte(smol_model: Path, probed: list[Outcome]) -> None:
    plain = decode(smol_model, probes=False)
    assert [o.text for o in plain] == [o.text for o in probed]
    assert all(o.choices == [] for o in plain)


def test_a_free_text_probe_reports_the_most_likely_tokens(smol_model: Path) -> None:
    from gra_local.backends.llama.prompt import chat_prompt

    d = decoder(smol_model)
    try:
        tokens, stop = chat_prompt(d.llm, messages("Say hello in one short sentence."))
        (outcome,) = d.run([Job(tokens=tokens, stop=stop, max_tokens=16, temperature=0.0, top_p=1.0,
                                seed=0, probe_after=[b""])])  # "" ends every output: every position
    finally:
        d.close()
        d.llm.close()
    assert outcome.completion_tokens >= 4 and len(outcome.choices) >= outcome.completion_tokens - 1
    for c in outcome.choices:
        assert 0 < len(c.probs) <= 32 and 0 < sum(c.probs.values()) <= 1.0 + 1e-6
        best = max(c.probs, key=lambda k: c.probs[k])  # greedy: the most likely token is chosen
        assert outcome.text.startswith(best, c.offset), (outcome.text[c.offset:], best)


def test_choices_cross_the_worker_protocol(smol_model: Path, tmp_path: Path) -> None:
    spec = ModelSpec(name="smol", path=str(smol_model), n_ctx=2048, n_parallel=2)
    session = LlamaProcessBackend(log_dir=tmp_path).load(spec)
    request = ChatRequest(messages=messages(USERS[0]), temperature=0.7, top_p=0.9, seed=0,
                          max_tokens=token_budget(InstructionVerdict), grammar=verdict_grammar())
    try:
        results = session.chat_many([request.model_copy(update={"probe_after": [VERDICT_PROBE]}), request])
    finally:
        session.close()
    probed, plain = results
    assert plain.choices == []  # no probe_after: no probes
    assert len(probed.choices) == len(VERDICT_FIELDS)
    for c in probed.choices:
        assert isinstance(c, TokenChoice) and probed.text[:c.offset].endswith(VERDICT_PROBE)
        check_distribution(c.probs)
        assert any(probed.text.startswith(k, c.offset) for k in c.probs)

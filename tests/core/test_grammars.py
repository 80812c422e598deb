"""GBNF grammars, held by llama.cpp's own grammar sampler (parse_json: test_grammars_parse.py).

llama-cpp-python 0.3.36's `LlamaGrammar.from_string` only stores the text: llama.cpp parses
a grammar when a sampler is made from it. So these tests build that sampler
(`llama_sampler_init_grammar`, NULL for a grammar that does not parse) on a real
vocabulary and feed it a reply token by token, as generation would: before each token,
`llama_sampler_apply` tells whether the grammar allows it (a refused token gets logit
-inf), then `llama_sampler_accept` advances the grammar. A reply is admitted when every
token is allowed and end-of-generation is allowed after the last one.

The vocabularies: the tiny test GGUF (tests/ggufs.py), whose tokens are single
characters and bytes, so a refusal lands on the exact byte; and the embedded SmolLM2's
BPE vocabulary, whose tokens span rule boundaries (skipped where it is not fetched).
"""

from __future__ import annotations

import ctypes
import json
import math
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from gra_local.core import grammars as g
from gra_local.core.config import DEFAULT_SAMPLING, Role
from gra_local.core.grammars import GRAMMARS, InvalidOutput, parse_json, token_budget
from gra_local.core.records import (
    DOMAINS,
    SCORE_FIELDS,
    VERDICT_FIELDS,
    Annotation,
    DraftInstruction,
    InstructionVerdict,
    Scores,
)

llama_cpp = pytest.importorskip("llama_cpp")

ROLE_OF = {Scores: Role.REVIEWER, InstructionVerdict: Role.REVIEWER,
           Annotation: Role.ANNOTATOR, DraftInstruction: Role.GENERATOR}
MESSAGES = [{"role": "system", "content": "Reply with JSON only."},
            {"role": "user", "content": "Judge this sample."}]
OUT_TYPES = list(GRAMMARS)


def type_id(t: type) -> str:
    return t.__name__


# --- driving llama.cpp's grammar sampler ---------------------------------------------


@dataclass
class Walk:
    """How far a grammar admitted a reply."""

    refused: tuple[int, int] | None  # byte span of the first token the grammar refused
    can_end: bool  # after the whole reply, end-of-generation is allowed

    @property
    def admitted(self) -> bool:
        return self.refused is None and self.can_end


class Vocab:
    """A model's vocabulary (loaded vocab-only) and llama.cpp's grammar sampler on it."""

    def __init__(self, path: Path, *, one_byte_tokens: bool = False) -> None:
        self.one_byte_tokens = one_byte_tokens  # every token one byte: refusals are exact
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        assert self.model, f"llama.cpp could not load the vocabulary of {path}"
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)

    def close(self) -> None:
        llama_cpp.llama_model_free(self.model)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, len(buf), False, False)
        assert n >= 0, text
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        assert n >= 0, token
        return buf.raw[:n]

    def sampler(self, grammar: str):  # type: ignore[no-untyped-def]
        smpl = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if not smpl:  # NULL: llama.cpp printed why on stderr
            pytest.fail(f"llama.cpp cannot parse this grammar:\n{grammar}")
        return smpl

    def allows(self, smpl, token: int) -> bool:  # type: ignore[no-untyped-def]
        cand = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        arr = llama_cpp.llama_token_data_array(cand, 1, -1, False)
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
        return not math.isinf(arr.data[0].logit)

    def walk(self, grammar: str, text: str) -> Walk:
        tokens = self.tokenize(text)
        assert b"".join(self.piece(t) for t in tokens) == text.encode()  # a faithful split
        smpl = self.sampler(grammar)
        try:
            at = 0
            for token in tokens:
                end = at + len(self.piece(token))
                if not self.allows(smpl, token):
                    # never accept a refused token: llama.cpp throws on an empty grammar stack
                    return Walk(refused=(at, end), can_end=False)
                llama_cpp.llama_sampler_accept(smpl, token)
                at = end
            return Walk(refused=None, can_end=self.allows(smpl, self.eos))
        finally:
            llama_cpp.llama_sampler_free(smpl)


@pytest.fixture(scope="module")
def tiny_vocab(tiny_gguf: Path):  # type: ignore[no-untyped-def]
    vocab = Vocab(tiny_gguf, one_byte_tokens=True)
    yield vocab
    vocab.close()


@pytest.fixture(scope="module", params=["tiny", "smollm2"])
def vocab(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Both vocabularies: byte-exact single characters, and a real BPE one."""
    if request.param == "tiny":
        yield request.getfixturevalue("tiny_vocab")
        return
    real = Vocab(request.getfixturevalue("smol_model"))
    yield real
    real.close()


def test_tiny_vocabulary_splits_text_into_single_bytes(tiny_vocab: Vocab) -> None:
    # what makes the refusal offsets below exact on the tiny vocabulary
    text = '{"a": "é\\n"}'
    assert [tiny_vocab.piece(t) for t in tiny_vocab.tokenize(text)] == [
        bytes([b]) for b in text.encode()]


def test_a_grammar_that_does_not_parse_fails_the_test(tiny_vocab: Vocab) -> None:
    with pytest.raises(pytest.fail.Exception, match="cannot parse"):
        tiny_vocab.sampler('root ::= "{" undefined-rule "}"')
    with pytest.raises(pytest.fail.Exception, match="cannot parse"):
        tiny_vocab.walk('root ::= [0-9', "1")


@pytest.mark.parametrize("out_type", OUT_TYPES, ids=type_id)
def test_grammar_parses(tiny_vocab: Vocab, out_type: type) -> None:
    llama_cpp.llama_sampler_free(tiny_vocab.sampler(GRAMMARS[out_type]))


# --- valid replies are admitted to the end ---------------------------------------------


def _longest(out_type: type) -> str:
    """The longest ASCII reply each grammar admits (escapes are two characters each)."""
    kw, sm = "k" * g.KEYWORD_MAX, "\\n" * g.SUMMARY_MAX
    keywords = f'"keywords": ["{kw}", "{kw}", "{kw}"]'
    if out_type is Scores:
        scores = ", ".join(f'"{f}": 10' for f in SCORE_FIELDS)
        return "{" + scores + ', "feedback": "' + "\\n" * g.FEEDBACK_MAX + '"}'
    if out_type is InstructionVerdict:
        return '{"reasonable": "pass", "complete": "pass", "clear": "pass"}'
    if out_type is Annotation:
        return '{"domain": "creative_writing", ' + keywords + f', "summary": "{sm}"}}'
    return "{" + keywords + f', "summary": "{sm}", "instruction": "' + "\\t" * g.INSTRUCTION_MAX + '"}'


def reply(out_type: type, **fields: object) -> str:
    """A reply as the grammar spells it (json.dumps's ", " and ": "), fields overridden."""
    base: dict[str, dict] = {
        Scores: {"correctness": 8, "clarity": 9, "completeness": 7, "relevance": 10,
                 "coherence": 0, "ethics": 10, "feedback": "Fine, but cite the source."},
        InstructionVerdict: {"reasonable": "pass", "complete": "fail", "clear": "pass"},
        Annotation: {"domain": "coding", "keywords": ["loop", "list", "sum"],
                     "summary": "Summing a list with a loop."},
        DraftInstruction: {"keywords": ["rust", "borrow checker", "lifetimes"],
                           "summary": "How borrows end.",
                           "instruction": "Explain why this Rust function fails to compile."},
    }
    return json.dumps(base[out_type] | fields, ensure_ascii=False)


VALID = [
    *[(t, reply(t)) for t in OUT_TYPES],
    (Scores, reply(Scores, feedback="")),  # feedback may be empty
    (Scores, reply(Scores, feedback='Très bien — "quoted" \\ back/slash\ttab')),
    (Scores, reply(Scores, feedback="é" * g.FEEDBACK_MAX)),  # the bound counts characters
    (InstructionVerdict, reply(InstructionVerdict, reasonable="fail", clear="fail")),
    *[(Annotation, reply(Annotation, domain=d)) for d in DOMAINS],
    (Annotation, reply(Annotation, keywords=["a b", "¿qué?", "C++"], summary="x" * g.SUMMARY_MAX)),
    (DraftInstruction, reply(DraftInstruction, instruction="Line one.\nLine two: «ok»")),
]


@pytest.mark.parametrize(("out_type", "text"), VALID,
                         ids=[f"{t.__name__}-{i}" for i, (t, _) in enumerate(VALID)])
def test_valid_reply_is_admitted_to_the_end(vocab: Vocab, out_type: type, text: str) -> None:
    assert vocab.walk(GRAMMARS[out_type], text) == Walk(refused=None, can_end=True)
    parse_json(text, out_type, "stop")  # what the grammar admits, the parser takes too


# --- invalid replies are refused where they go wrong ------------------------------------
# Each case is (type, valid prefix, rest): the first refused token holds the rest's first
# byte. rest None: every token is allowed but the reply cannot end there (unterminated).

S = reply(Scores)
FB = S[: S.index('"feedback": "') + len('"feedback": "')]  # a Scores reply up to its feedback
V = reply(InstructionVerdict)
A = reply(Annotation)
KW = A[: A.index("[") + 2]  # an Annotation up to its first keyword
SM = A[: A.index('"summary": "') + len('"summary": "')]
D = reply(DraftInstruction)
INS = D[: D.index('"instruction": "') + len('"instruction": "')]

INVALID = {
    # Scores
    "scores: wrong key order": (Scores, '{"c', 'larity": 9, "correctness": 8'),
    "scores: a key left out": (Scores, '{"correctness": 8, "c', 'ompleteness": 7'),
    "scores: 11": (Scores, '{"correctness": 1', '1, "clarity": 9'),
    "scores: 100": (Scores, '{"correctness": 10', '0, "clarity": 9'),
    "scores: negative": (Scores, '{"correctness": ', '-1, "clarity": 9'),
    "scores: fraction": (Scores, '{"correctness": 8', '.5, "clarity": 9'),
    "scores: quoted": (Scores, '{"correctness": ', '"8", "clarity": 9'),
    "scores: no space after colon": (Scores, '{"correctness":', '8, "clarity": 9'),
    "scores: feedback over its bound": (Scores, FB + "x" * g.FEEDBACK_MAX, 'x"}'),
    "scores: escapes count as one": (Scores, FB + "\\n" * g.FEEDBACK_MAX, '\\n"}'),
    "scores: non-ASCII over the bound": (Scores, FB + "é" * g.FEEDBACK_MAX, 'é"}'),
    "scores: raw newline in a string": (Scores, FB + "line", '\nbreak"}'),
    "scores: unknown escape": (Scores, FB + "\\", 'q"}'),
    "scores: unterminated feedback": (Scores, FB + "Fine.}", None),
    "scores: extra key": (Scores, S[:-1], ', "bonus": 1}'),
    "scores: text after the object": (Scores, S, " "),
    "scores: leading whitespace": (Scores, "", " " + S),
    "scores: a code fence": (Scores, "", "```json\n" + S),
    # InstructionVerdict
    "verdict: wrong key order": (InstructionVerdict, '{"', 'clear": "pass"'),
    "verdict: yes": (InstructionVerdict, '{"reasonable": "', 'yes", "complete": "pass"'),
    "verdict: passed": (InstructionVerdict, '{"reasonable": "pass', 'ed", "complete": "pass"'),
    "verdict: unquoted": (InstructionVerdict, '{"reasonable": ', 'pass, "complete": "pass"'),
    "verdict: boolean": (InstructionVerdict, '{"reasonable": ', 'true, "complete": "pass"'),
    "verdict: cut short": (InstructionVerdict, V[:-2], None),
    # Annotation
    "annotation: keywords before domain": (Annotation, '{"', 'keywords": ["a", "b", "c"]'),
    "annotation: unknown domain": (Annotation, '{"domain": "', 'science", "keywords": ['),
    "annotation: domain with a prefix": (Annotation, '{"domain": "co', 'oking", "keywords": ['),
    "annotation: two keywords": (Annotation, KW + 'ab", "cd"', '], "summary": "Summing lists."}'),
    "annotation: four keywords": (Annotation, KW + 'ab", "cd", "ef"', ', "gh"], "summary": "x"}'),
    "annotation: one-character keyword": (Annotation, KW + "a", '", "cd", "ef"]'),
    "annotation: comma in a keyword": (Annotation, KW + "a", ',b", "cd", "ef"]'),
    "annotation: escape in a keyword": (Annotation, KW + "ab", '\\n", "cd", "ef"]'),
    "annotation: keyword over its bound": (Annotation, KW + "k" * g.KEYWORD_MAX, 'k", "cd", "ef"]'),
    "annotation: summary under its bound": (Annotation, SM + "Too short", '"}'),
    "annotation: summary over its bound": (Annotation, SM + "s" * g.SUMMARY_MAX, 's"}'),
    "annotation: unterminated summary": (Annotation, A[:-2], None),
    # DraftInstruction
    "draft: summary before keywords": (DraftInstruction, '{"', 'summary": "How borrows end."'),
    "draft: a domain key": (DraftInstruction, '{"', 'domain": "coding", "keywords": ['),
    "draft: single quotes": (DraftInstruction, "{", "'keywords': ['a', 'b', 'c']"),
    "draft: instruction before summary": (DraftInstruction, D[: D.index('"summary"') + 1],
                                          'instruction": "Do this now."'),
    "draft: instruction under its bound": (DraftInstruction, INS + "Do it.", '"}'),
    "draft: instruction over its bound": (DraftInstruction, INS + "i" * g.INSTRUCTION_MAX, 'i"}'),
    "draft: unterminated instruction": (DraftInstruction, D[:-2], None),
    "draft: trailing comma": (DraftInstruction, D[:-1], ', }'),
}


@pytest.mark.parametrize(("out_type", "prefix", "rest"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_reply_is_refused_where_it_goes_wrong(vocab: Vocab, out_type: type, prefix: str,
                                                     rest: str | None) -> None:
    grammar = GRAMMARS[out_type]
    # the prefix alone is a valid start: every token allowed, the reply not over yet
    assert vocab.walk(grammar, prefix) == Walk(refused=None, can_end=prefix == reply(out_type))
    walk = vocab.walk(grammar, prefix + (rest or ""))
    if rest is None:
        assert walk == Walk(refused=None, can_end=False)
        return
    assert walk.refused is not None, "the grammar admitted an invalid reply"
    start, end = walk.refused
    at = len(prefix.encode())
    assert start <= at < end, (walk.refused, at)
    if vocab.one_byte_tokens:  # the tiny vocabulary: the place is exact
        assert (start, end) == (at, at + 1)


@pytest.mark.parametrize("out_type", OUT_TYPES, ids=type_id)
def test_token_budget_covers_longest_reply(vocab: Vocab, out_type: type) -> None:
    text = _longest(out_type)
    orjson.loads(text)  # well-formed JSON
    assert vocab.walk(GRAMMARS[out_type], text).admitted  # and admitted by the grammar
    # an ASCII character is at least one token in any vocabulary
    assert len(text) <= token_budget(out_type)


# --- a tiny real model generating under each grammar -----------------------------------


@pytest.fixture(scope="module")
def llm(tiny_gguf: Path):  # type: ignore[no-untyped-def]
    model = llama_cpp.Llama(model_path=str(tiny_gguf), n_ctx=2048, verbose=False)
    yield model
    model.close()


@pytest.mark.parametrize("out_type", OUT_TYPES, ids=type_id)
def test_tiny_model_output_follows_the_grammar(llm, out_type: type) -> None:  # type: ignore[no-untyped-def]
    grammar = llama_cpp.LlamaGrammar.from_string(GRAMMARS[out_type], verbose=False)
    sampling = DEFAULT_SAMPLING[ROLE_OF[out_type]]
    semantic_failures = []
    for seed in range(10):
        out = llm.create_chat_completion(
            messages=MESSAGES, grammar=grammar, seed=seed, max_tokens=token_budget(out_type),
            temperature=sampling.temperature, top_p=sampling.top_p,
            repeat_penalty=sampling.repeat_penalty)
        choice = out["choices"][0]
        text = choice["message"]["content"]
        # the grammar, not the token limit, ends every reply
        assert choice["finish_reason"] == "stop", (seed, text)
        data = orjson.loads(text)
        assert list(data) == list(out_type.model_fields), (seed, text)  # key order is fixed
        if out_type in (Scores, InstructionVerdict):
            parsed = parse_json(text, out_type, choice["finish_reason"])
            if out_type is Scores:
                assert all(0 <= getattr(parsed, f) <= 10 for f in SCORE_FIELDS)
                assert len(parsed.feedback) <= g.FEEDBACK_MAX
            else:
                assert all(getattr(parsed, f) in ("pass", "fail") for f in VERDICT_FIELDS)
            continue
        assert len(data["keywords"]) == 3
        assert all(isinstance(k, str) and 2 <= len(k) <= g.KEYWORD_MAX for k in data["keywords"])
        assert 10 <= len(data["summary"]) <= g.SUMMARY_MAX
        if out_type is Annotation:
            assert data["domain"] in DOMAINS
        # nonsense text from the tiny model may fail the semantic checks, nothing else
        try:
            parse_json(text, out_type, choice["finish_reason"])
        except InvalidOutput as exc:
            assert exc.reason.startswith(("keywords:", "instruction:")), exc.reason
            semantic_failures.append(exc.reason)
    assert len(semantic_failures) < 10, semantic_failures

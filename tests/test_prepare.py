"""The checks before a run: a generator's answers must fit its judges' contexts."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLE_SEEDS
from ggufs import write_tiny_gguf

from gra_local.core import prompts
from gra_local.core.config import ModelSpec, Registry, Role
from gra_local.core.engine.calls import reply_room
from gra_local.core.errors import ConfigError
from gra_local.core.grammars import INSTRUCTION_MAX
from gra_local.core.options import RunOptions
from gra_local.core.records import DraftInstruction, Scores
from gra_local.prepare import check_contexts, prepare_run, prompt_tokens_bound

OPTIONS = RunOptions(samples=1, dedup_threshold=None)
REPLY = reply_room(Scores)
REVIEW = prompt_tokens_bound(prompts.review_response("x" * INSTRUCTION_MAX, "", 0)) + REPLY


def spec(name: str, roles: list[Role] | None = None, max_tokens: int | None = None) -> ModelSpec:
    sampling = {} if max_tokens is None else {"generator": {"max_tokens": max_tokens}}
    return ModelSpec(name=name, path=f"/m/{name}.gguf", roles=roles or list(Role), sampling=sampling)


def test_the_bound_counts_bytes_conservatively() -> None:
    one = [{"role": "user", "content": "é" * 10}]  # 20 bytes
    assert prompt_tokens_bound(one) == 10 + 8
    assert prompt_tokens_bound(one * 3) == 3 * 18


@pytest.mark.parametrize("n_ctx", [2048, 4096])  # the tests' models and the embedded default
def test_shipped_and_test_configs_pass(n_ctx: int) -> None:
    registry = Registry(models=[spec("smol")])  # default sampling: generator max_tokens 512
    check_contexts(registry, OPTIONS, {"smol": n_ctx})
    check_contexts(registry, RunOptions(samples=1, panel=16), {"smol": 4096})


def test_a_generator_too_long_for_a_reviewer_names_both_and_the_numbers() -> None:
    registry = Registry(models=[spec("big", [Role.GENERATOR], max_tokens=1500),
                                spec("small", [Role.REVIEWER]), spec("judge", [Role.ADJUDICATOR])])
    contexts = {"big": 8192, "small": 2048, "judge": 8192}
    with pytest.raises(ConfigError) as err:
        check_contexts(registry, OPTIONS, contexts)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"generator 'big': max_tokens 1500 does not fit the n_ctx of reviewer "
                       f"'small', 2048, with the review prompt and reply (up to {REVIEW} tokens): "
                       f"set [models.sampling.generator] max_tokens = {2048 - REVIEW} or less for "
                       "'big', or raise the n_ctx of 'small'")
    fits = Registry(models=[spec("big", [Role.GENERATOR], max_tokens=2048 - REVIEW),
                            spec("small", [Role.REVIEWER]), spec("judge", [Role.ADJUDICATOR])])
    check_contexts(fits, OPTIONS, contexts)


def test_the_tightest_judge_is_named_so_the_suggested_max_tokens_fits_all() -> None:
    registry = Registry(models=[spec("big", [Role.GENERATOR], max_tokens=1500),
                                spec("small", [Role.REVIEWER, Role.ADJUDICATOR])])
    with pytest.raises(ConfigError, match=r"the n_ctx of adjudicator 'small', 2048, with the "
                                          r"adjudication prompt and reply \(up to (\d+) tokens\)"
                       ) as err:  # its prompt holds the panel's reviews too: the longer one
        check_contexts(registry, OPTIONS, {"big": 8192, "small": 2048})
    suggested = int(str(err.value).split("max_tokens = ")[1].split()[0])
    assert suggested < 2048 - REVIEW
    fits = Registry(models=[spec("big", [Role.GENERATOR], max_tokens=suggested),
                            spec("small", [Role.REVIEWER, Role.ADJUDICATOR])])
    check_contexts(fits, OPTIONS, {"big": 8192, "small": 2048})
    over = Registry(models=[spec("big", [Role.GENERATOR], max_tokens=suggested + 1),
                            spec("small", [Role.REVIEWER, Role.ADJUDICATOR])])
    with pytest.raises(ConfigError):
        check_contexts(over, OPTIONS, {"big": 8192, "small": 2048})


def test_a_generator_too_long_for_its_own_context() -> None:
    registry = Registry(models=[spec("g", [Role.GENERATOR], max_tokens=2000),
                                spec("r", [Role.REVIEWER, Role.ADJUDICATOR])])
    with pytest.raises(ConfigError, match=r"^generator 'g': max_tokens 2000 does not fit its own "
                                          r"n_ctx 2048, with the answer prompt \(up to \d+ tokens\)"):
        check_contexts(registry, OPTIONS, {"g": 2048, "r": 32768})


def test_prepare_run_checks_contexts_before_any_load_but_not_for_review(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")  # trained context 2048
    registry = Registry(models=[ModelSpec(name="tiny", path=str(gguf), n_ctx=2048,
                                          sampling={"generator": {"max_tokens": 1800}})])
    with pytest.raises(ConfigError, match="generator 'tiny': max_tokens 1800 does not fit"):
        prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, registry, "test")
    request = prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, registry, "test", review=True)
    assert request.refs["tiny"].name == "tiny"  # review-only data is checked pair by pair
    ok = Registry(models=[ModelSpec(name="tiny", path=str(gguf), n_ctx=2048)])
    assert prepare_run(EXAMPLE_SEEDS, tmp_path / "out", OPTIONS, ok, "test").registry == ok


def test_a_generator_context_too_small_for_a_draft() -> None:
    draft = prompt_tokens_bound(prompts.draft("qa", [], 0)) + reply_room(DraftInstruction)
    registry = Registry(models=[spec("g", [Role.GENERATOR], max_tokens=16),
                                spec("r", [Role.REVIEWER, Role.ADJUDICATOR])])
    with pytest.raises(ConfigError, match=rf"^generator 'g': its n_ctx {draft - 1} cannot hold the "
                                          rf"draft prompt and reply \(up to {draft} tokens"):
        check_contexts(registry, OPTIONS, {"g": draft - 1, "r": 4096})
    check_contexts(registry, OPTIONS, {"g": draft, "r": 4096})

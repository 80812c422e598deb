"""GGUF chat templates are untrusted input: whoever made the file wrote the Jinja that
`chat_prompt` has llama-cpp-python render. It must render in jinja2's immutable sandbox,
on a jinja2 without the sandbox escapes CVE-2024-56326 and CVE-2025-27516 (fixed in 3.1.6)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import tomllib
from ggufs import write_tiny_gguf

pytest.importorskip("llama_cpp")

from jinja2.exceptions import SecurityError  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

from gra_local.backends.llama.prompt import chat_prompt, load_llama  # noqa: E402

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"
FLOOR = (3, 1, 6)

ESCAPE = "{{ ('{0.__class__.__mro__}'|attr('format'))(messages) }}"
"""CVE-2025-27516: `|attr` fetched str.format past the sandbox's checks. jinja2 3.1.5
renders this as "(<class 'list'>, <class 'object'>)" (checked by hand); from there a
template reaches `__globals__` and `__import__`."""

MESSAGES = [{"role": "user", "content": "hi"}]


def version(text: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    assert m, text
    return tuple(int(x) for x in m.groups())


def test_pyproject_requires_the_jinja2_floor() -> None:
    deps = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = [d for d in deps if re.match(r"jinja2\s*>=", d, re.IGNORECASE)]
    assert len(floors) == 1, deps
    assert version(floors[0].split(">=", 1)[1]) >= FLOOR


def test_installed_jinja2_meets_the_floor() -> None:
    installed = importlib.metadata.version("jinja2")
    assert version(installed) >= FLOOR, f"jinja2 {installed}: reinstall with scripts/setup"


def test_llama_cpp_renders_chat_templates_in_the_immutable_sandbox() -> None:
    from llama_cpp import llama_chat_format

    formatter = llama_chat_format.Jinja2ChatFormatter(
        template="{% for m in messages %}{{ m['content'] }}{% endfor %}",
        eos_token="</s>", bos_token="<s>")
    assert type(formatter._environment.environment) is ImmutableSandboxedEnvironment
    assert formatter(messages=MESSAGES).prompt == "hi"  # type: ignore[arg-type]
    with pytest.raises(SecurityError):  # immutable: a template cannot change its inputs
        llama_chat_format.Jinja2ChatFormatter(
            template="{{ messages.append(messages[0]) }}", eos_token="</s>", bos_token="<s>",
        )(messages=MESSAGES)  # type: ignore[arg-type]


def test_a_gguf_template_that_escapes_the_sandbox_is_refused(tmp_path: Path) -> None:
    """The way a worker loads a model and builds a prompt (the GGUF's own template)."""
    gguf = write_tiny_gguf(tmp_path / "escape.gguf", chat_template=ESCAPE)
    llm = load_llama(str(gguf), kv_cells=256, n_parallel=1, n_gpu_layers=0, n_threads=1,
                     chat_format=None, seed=1, verbose=False)
    try:
        assert llm.chat_format == "chat_template.default"  # the GGUF's template, not a named format
        with pytest.raises(SecurityError, match="unsafe"):
            chat_prompt(llm, MESSAGES)
    finally:
        llm.close()


def test_a_plain_gguf_template_still_renders(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "plain.gguf",
                           chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")
    llm = load_llama(str(gguf), kv_cells=256, n_parallel=1, n_gpu_layers=0, n_threads=1,
                     chat_format=None, seed=1, verbose=False)
    try:
        tokens, stop = chat_prompt(llm, MESSAGES)
        assert llm.detokenize(tokens).decode() == "hi" and stop == ["</s>"]
    finally:
        llm.close()

"""What every `gra-local` start pays, the app's first frame included (scripts/bench_tui.py
times it): no pydantic plugin search, no parse of the options' docstrings before --help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_the_command_does_not_look_for_pydantic_plugins() -> None:
    """Looking for them reads every installed package's metadata at the first model (~25 ms
    of each start); a value the user set is kept."""
    code = ("import os, gra_local.cli, pydantic.plugin._loader as plugins\n"
            "print(os.environ['PYDANTIC_DISABLE_PLUGINS'], plugins._plugins)")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["__all__", "None"]  # None: never looked for
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYDANTIC_DISABLE_PLUGINS": "0"},
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert out == ["0", "{}"]


def test_the_options_docstrings_are_read_only_for_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Reading them parses options.py: `gra-local app` and `run` pay it only with --help."""
    from gra_local.cli import _parser
    from gra_local.core.surface import attribute_docs

    attribute_docs.cache_clear()
    _parser().parse_args(["app"])
    assert attribute_docs.cache_info().currsize == 0
    with pytest.raises(SystemExit):
        _parser().parse_args(["review", "--help"])
    assert "reviewers per sample (default 3)" in " ".join(capsys.readouterr().out.split())
    assert attribute_docs.cache_info().currsize == 1

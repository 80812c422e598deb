"""`gra-local run` on bad input: exit code ≠ 0, one readable message, no traceback.

Every case runs the real CLI in a subprocess, with the isolated config/cache dirs of
conftest.py. The model files are tiny GGUFs (tests/ggufs.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml
from ggufs import write_not_gguf, write_tiny_gguf, write_truncated_gguf

from gra_local.core.rundir import journal

ERROR = "gra-local: error:"


def cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gra_local.cli", *map(str, args)],
                          check=False, env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code ≠ 0, stderr is exactly one line `gra-local: error: …` naming `needles`."""
    assert proc.returncode != 0
    no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def last_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Like one_line_error, for errors found after the run printed its first progress line."""
    assert proc.returncode != 0
    no_traceback(proc)
    lines = proc.stderr.strip().splitlines()
    assert [ln for ln in lines if ln.startswith(ERROR)] == lines[-1:], proc.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.fixture
def models(tmp_path: Path, tiny_gguf: Path) -> Path:
    # one thread: llama.cpp threads spin at barriers and slow down ~1000x on a busy CPU
    return write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)], "n_threads = 1")


def bad_models(tmp_path: Path, gguf: Path, extra: str = "") -> Path:
    return write_models_toml(tmp_path / "bad-models.toml", [("broken", gguf)], extra)


# --- seed files ------------------------------------------------------------------------

SEED_CASES = {
    "empty": (b"", ["empty"]),
    "malformed_line_3": (b'{"instruction": "One."}\n{"instruction": "Two."}\n{"instruction": "Th\n',
                         ["line 3", "malformed JSON"]),
    "not_utf8": (b'{"instruction": "Caf\xe9 au lait?"}\n', ["line 1", "UTF-8"]),
}


@pytest.mark.parametrize("case", list(SEED_CASES))
def test_bad_seed_file(tmp_path: Path, models: Path, case: str) -> None:
    data, needles = SEED_CASES[case]
    seeds = tmp_path / f"{case}.jsonl"
    seeds.write_bytes(data)
    proc = cli("run", seeds, "--out", tmp_path / "out", "--models", models)
    last_line_error(proc, seeds.name, *needles)


def test_missing_seed_file(tmp_path: Path, models: Path) -> None:
    proc = cli("run", tmp_path / "nope.jsonl", "--out", tmp_path / "out", "--models", models)
    one_line_error(proc, "nope.jsonl", "not found")
    assert not (tmp_path / "out").exists()  # nothing is created before inputs are checked


def test_bad_seed_file_error_is_the_only_output(tmp_path: Path, models: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(b"")
    one_line_error(cli("run", seeds, "--out", tmp_path / "out", "--models", models), "empty")


def test_corrected_seed_file_is_not_refused(tmp_path: Path, models: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(b"")
    out = tmp_path / "out"
    last_line_error(cli("run", seeds, "--out", out, "--models", models, "--quiet"), "empty")
    # corrected, yet still unusable (stops the run cheaply): the error must be about the
    # seeds, not a clash with the failed attempt's settings
    seeds.write_bytes(b'{"foo": 1}\n')
    msg = last_line_error(cli("run", seeds, "--out", out, "--models", models, "--quiet"))
    assert "other settings" not in msg
    assert "seeds.jsonl" in msg


# --- model files -----------------------------------------------------------------------


def test_missing_model_path(tmp_path: Path) -> None:
    models = bad_models(tmp_path, tmp_path / "gone.gguf")
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models)
    one_line_error(proc, "'broken'", "gone.gguf", "not found")


def test_not_a_gguf(tmp_path: Path) -> None:
    models = bad_models(tmp_path, write_not_gguf(tmp_path / "page.gguf"))
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models)
    one_line_error(proc, "'broken'", "page.gguf", "not a GGUF")


def test_truncated_gguf(tmp_path: Path) -> None:
    models = bad_models(tmp_path, write_truncated_gguf(tmp_path / "cut.gguf"))
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models)
    one_line_error(proc, "'broken'", "cut.gguf", "truncated")


def test_gguf_without_chat_template(tmp_path: Path) -> None:
    gguf = write_tiny_gguf(tmp_path / "plain.gguf", chat_template=None)
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", bad_models(tmp_path, gguf))
    one_line_error(proc, "'broken'", "plain.gguf", "chat template", "chat_format")
    # setting chat_format gets past the model check: the next check (an unwritable --out,
    # made so here to stop the run) is what fails now
    fixed = bad_models(tmp_path, gguf, 'chat_format = "chatml"')
    (tmp_path / "blocker").write_text("")
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "blocker" / "out", "--models", fixed)
    one_line_error(proc, "not writable")


# --- models.toml -----------------------------------------------------------------------


@pytest.mark.parametrize("extra, needles", [
    ("n_ctxx = 2048", ["'broken'", "n_ctxx", "unknown key"]),
    ('n_gpu_layers = "lots"', ["'broken'", "n_gpu_layers"]),
    ("roles = 3", ["'broken'", "roles"]),
])
def test_invalid_models_toml(tmp_path: Path, tiny_gguf: Path, extra: str, needles: list[str]) -> None:
    models = bad_models(tmp_path, tiny_gguf, extra)
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models)
    one_line_error(proc, "bad-models.toml", *needles)


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text('[[models]]\nname = "x"\npath = \n', encoding="utf-8")
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models)
    one_line_error(proc, "models.toml", "line 3")


def test_missing_models_file(tmp_path: Path) -> None:
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", tmp_path / "m.toml")
    one_line_error(proc, "m.toml", "not found")


def test_no_models_configured(tmp_path: Path) -> None:
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out")
    one_line_error(proc, "no models configured", "`gra-local models pull-default`", "--models")


# --- options and output directory --------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bad_samples(tmp_path: Path, models: Path, value: str) -> None:
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models, "--samples", value)
    assert proc.returncode == 2
    no_traceback(proc)
    # argparse's own format: usage, then one error line naming the option
    assert proc.stderr.startswith("usage: gra-local run")
    assert proc.stderr.strip().splitlines()[-1].startswith("gra-local run: error: argument --samples")
    assert not (tmp_path / "out").exists()


def test_bad_tau_is_a_clean_error(tmp_path: Path, models: Path) -> None:
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models, "--tau", "11")
    one_line_error(proc, "--tau")


def test_bad_new_flag_is_a_clean_error(tmp_path: Path, models: Path) -> None:
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models,
               "--examples-per-prompt", "9")
    one_line_error(proc, "--examples-per-prompt:", "less than or equal to 8")
    assert not (tmp_path / "out").exists()


# --- flags generated from RunOptions (in process) -------------------------------------------

SET_EVERY = {
    "samples": (["--samples", "7"], 7),
    "max_attempts": (["--max-attempts", "9"], 9),
    "rounds": (["--rounds", "2"], 2),
    "panel": (["--panel", "2"], 2),
    "tau": (["--tau", "7.5"], 7.5),
    "delta": (["--delta", "2"], 2.0),
    "batch": (["--batch", "4"], 4),
    "seed": (["--seed", "5"], 5),
    "seed_pool": (["--seed-pool", "8"], 8),
    "examples_per_prompt": (["--examples-per-prompt", "2"], 2),
    "dedup_threshold": (["--dedup-threshold", "0.8"], 0.8),
    "minhash": (["--no-minhash"], False),
    "relevance": (["--no-relevance"], False),
    "likelihood": (["--no-likelihood"], False),
    "canaries": (["--canaries", "2"], 2),
    "calibration": (["--calibration", "drop"], "drop"),
    "min_canary_accuracy": (["--min-canary-accuracy", "0.5"], 0.5),
    "judge": (["--judge", "panel"], "panel"),
    "routing": (["--no-routing"], False),
}


def parsed(command: str, *flags: str) -> dict[str, object]:
    from gra_local.cli import _parser, option_values

    args = _parser().parse_args([command, "data.jsonl", "--out", "out", *flags])
    return option_values(args, review=command == "review")


def test_every_run_option_is_reachable_from_run() -> None:
    from gra_local.core.options import RunOptions

    assert set(SET_EVERY) == set(RunOptions.model_fields)
    flags = [flag for argv, _ in SET_EVERY.values() for flag in argv]
    options = RunOptions(**parsed("run", *flags))
    assert {name: getattr(options, name) for name in SET_EVERY} == \
        {name: value for name, (_, value) in SET_EVERY.items()}


def test_review_takes_the_options_it_uses() -> None:
    from gra_local.core.options import option_fields

    used = {f.name for f in option_fields() if f.surface.review}
    assert used == {"panel", "tau", "delta", "batch", "seed", "dedup_threshold", "minhash",
                    "relevance", "likelihood", "canaries", "calibration", "min_canary_accuracy",
                    "judge", "routing"}
    flags = [flag for name in sorted(used) for flag in SET_EVERY[name][0]]
    assert parsed("review", *flags) == {name: SET_EVERY[name][1] for name in used}
    with pytest.raises(SystemExit):  # generation options are not review's
        parsed("review", "--samples", "3")


@pytest.mark.parametrize("command", ["run", "review"])
def test_cli_defaults_are_run_options_defaults(command: str) -> None:
    from gra_local.core.options import RunOptions

    values = parsed(command)
    defaults = {name: f.default for name, f in RunOptions.model_fields.items() if name in values}
    if command == "run":  # RunOptions requires samples; the CLI offers 10 (its Surface.offer)
        assert values.pop("samples") == 10
        defaults.pop("samples")
    assert values == defaults


def test_off_flags_win_over_a_value() -> None:
    for flags in (["--no-dedup", "--dedup-threshold", "0.8"], ["--dedup-threshold", "0.8", "--no-dedup"]):
        assert parsed("run", *flags)["dedup_threshold"] is None
    assert parsed("run")["minhash"] is True and parsed("run", "--no-minhash")["minhash"] is False


def test_run_help_lists_every_option_with_its_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    from gra_local.cli import _parser
    from gra_local.core.options import option_fields

    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in option_fields():
        assert (f.surface.off or f.flag) in text, f.name
        if f.kind is not bool:
            assert f.doc.rstrip(".")[1:40] in text, f.name
    assert "(default 8.0)" in text and "(default 10)" in text


def test_option_errors_name_the_option_as_the_surface_shows_it() -> None:
    from gra_local.core.errors import ConfigError
    from gra_local.prepare import build_options

    with pytest.raises(ConfigError, match=r"^--min-canary-accuracy: Input should be less"):
        build_options({"samples": 1, "min_canary_accuracy": 2}, "cli")
    with pytest.raises(ConfigError, match=r"^min canary acc: Input should be less"):
        build_options({"samples": 1, "min_canary_accuracy": 2}, "app")
    with pytest.raises(ConfigError, match=r"^tau: Input should be a valid number"):
        build_options({"samples": "3", "tau": "lots"}, "app")
    assert build_options({"samples": "3", "tau": "7.5"}, "app").tau == 7.5  # the form's text


def test_unwritable_out(tmp_path: Path, models: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = cli("run", EXAMPLE_SEEDS, "--out", blocker / "out", "--models", models)
    one_line_error(proc, str(blocker / "out"), "not writable")


def test_locked_out_dir(tmp_path: Path, models: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lock = journal.RunLock(out)
    lock.acquire()
    try:
        proc = cli("run", EXAMPLE_SEEDS, "--out", out, "--models", models)
    finally:
        lock.release()
    one_line_error(proc, str(out), "in use", str(os.getpid()))
    assert not (out / journal.RUN_JSON).exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    models = bad_models(tmp_path, tmp_path / "gone.gguf")
    proc = cli("--debug", "run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(ERROR)


# --- an existing run directory -------------------------------------------------------------


def test_other_settings_refused_then_restart(tmp_path: Path, models: Path) -> None:
    out = tmp_path / "out"
    base = ["run", EXAMPLE_SEEDS, "--out", out, "--models", models, "--samples", 1,
            "--max-attempts", 2, "--panel", 1, "--seed-pool", 3, "--judge", "panel", "--quiet"]
    first = cli(*base, timeout=300)
    assert first.returncode == 0, first.stderr
    no_traceback(first)
    decided = [orjson.loads(line) for name in (journal.ACCEPTED, journal.REJECTED)
               for line in (out / name).read_bytes().splitlines()]
    assert len(decided) == 2  # two attempts, each decided once
    run_json = orjson.loads((out / journal.RUN_JSON).read_bytes())
    assert run_json["counts"]["attempts"] == 2

    refused = cli(*base, "--tau", 7)
    msg = one_line_error(refused, str(out), "tau", "--restart")
    assert "8.0" in msg and "7.0" in msg
    assert orjson.loads((out / journal.RUN_JSON).read_bytes()) == run_json  # untouched

    restarted = cli(*base, "--tau", 7, "--restart", timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    no_traceback(restarted)
    previous = sorted(out.glob("previous-*"))
    assert len(previous) == 1
    old = previous[0]
    for name in (journal.ACCEPTED, journal.REJECTED, journal.RUN_JSON, journal.POOL):
        assert (old / name).is_file(), name
    assert orjson.loads((old / journal.RUN_JSON).read_bytes())["identity"] == run_json["identity"]
    new = orjson.loads((out / journal.RUN_JSON).read_bytes())
    assert new["identity"]["options"]["tau"] == 7.0
    assert new["counts"]["attempts"] == 2


def test_embedding_cache_from_another_model_is_refused(tmp_path: Path, models: Path, minilm,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from gra_local.core.quality.embed_cache import FORMAT

    cache = tmp_path / "cache"
    # Another model's cache file where MiniLM's belongs (say, copied over by hand).
    target = cache / "embeddings" / f"all-MiniLM-L6-v2-{minilm.sha256[:16]}.vec"
    target.parent.mkdir(parents=True)
    header = {"dim": 384, "embedder": "other-model", "format": FORMAT, "sha256": "0" * 64}
    target.write_bytes(orjson.dumps(header, option=orjson.OPT_SORT_KEYS) + b"\n")
    monkeypatch.setenv("GRA_LOCAL_CACHE_DIR", str(cache))
    proc = cli("run", EXAMPLE_SEEDS, "--out", tmp_path / "out", "--models", models, "--samples", "1")
    one_line_error(proc, str(target), "other-model", "all-MiniLM-L6-v2", "delete the file")
    assert not (tmp_path / "out" / "accepted.jsonl").exists()

"""Every scripts/bench_*.py runs in its quick mode and ends with its figure line (a number,
or `n/a` with a reason where a side has nothing to compare), and no bench, nor this test
session, writes into the user's config, cache or data dirs. What the figures compare is
tested on hand-made figures in test_bench_figures.py.

Marked `bench` (deselect with `-m "not bench"`); scripts/test runs them. A quick bench
should take well under two minutes on 2 idle cores: one that takes longer warns, it does
not fail (CI machines are shared, and the timings are not what is tested).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import GRA_DIRS, REAL_DIRS, REAL_ENV, REPO, XDG_DIRS
from private_dirs import shadow_data_dir

SCRIPTS = REPO / "scripts"
BENCHES = sorted(p.stem for p in SCRIPTS.glob("bench_*.py"))
FIGURES = {  # the name of each bench's last line, `name=value`
    "bench_decode": "structured_ratio",
    "bench_dedup": "dedup_5k_seconds",  # the quick size: the name carries it
    "bench_endpoints": "scale_2_endpoints",
    "bench_judging": "panel_gain",
    "bench_overhead": "overhead_ratio",
    "bench_residency": "loads_ratio",
    "bench_tui": "max_stall_ms",
    "bench_vs_distilabel": "judged_per_hour_ratio",
}
NEEDS_EMBEDDED_MODEL = {"bench_decode", "bench_endpoints", "bench_judging", "bench_overhead",
                        "bench_vs_distilabel"}
"""The others run the tiny test GGUF in quick mode (bench_dedup's MiniLM part is optional)."""
NEEDS_EMBEDDER = {"bench_judging"}
"""gra-local review with default options: dedup (and the relevance reviewer) embed with MiniLM."""
QUICK_TARGET_S = 120
TIMEOUT_S = 600
FIGURE = re.compile(r"^([a-z][a-z0-9_]*)=(\S+)(?:\s.*)?$")


def run_bench(name: str, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPTS / f"{name}.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    return proc, time.perf_counter() - start


def figure(stdout: str) -> tuple[str, float | None]:
    """The last line's `name=value` (more figures or a reason may follow), value as a float,
    None for `n/a`."""
    lines = stdout.strip().splitlines()
    assert lines, "no output"
    m = FIGURE.match(lines[-1])
    assert m, f"last line is not `name=value`: {lines[-1]!r}"
    return m.group(1), None if m.group(2) == "n/a" else float(m.group(2))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root (links not followed): size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def state(path: Path) -> tuple[int, int, bytes] | None:
    """A file's size, mtime and bytes; None when absent."""
    if not path.is_file():
        return None
    st = path.stat()
    return st.st_size, st.st_mtime_ns, path.read_bytes()


@pytest.fixture
def user_home(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose *user* dirs are a stand-in home (XDG dirs, no GRA_LOCAL_*_DIR),
    with a settings.toml in its config dir and the user's models in its data dir (links):
    what a bench would write there shows, and the real user's dirs are never at risk."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in GRA_DIRS}
    for var in XDG_DIRS:
        env[var] = str(home / var.split("_")[1].lower())
    config = home / "config" / "gra-local"
    config.mkdir(parents=True)
    (config / "settings.toml").write_text('theme = "nord"\n', encoding="utf-8")
    (home / "cache" / "gra-local").mkdir(parents=True)
    shadow_data_dir(REAL_DIRS["data"], home / "data" / "gra-local")
    return env, home


@pytest.mark.bench
@pytest.mark.parametrize("name", BENCHES)
def test_quick_bench_ends_with_its_figure(name: str, user_home: tuple[dict[str, str], Path],
                                          request: pytest.FixtureRequest) -> None:
    if name in NEEDS_EMBEDDED_MODEL:
        request.getfixturevalue("smol_model")  # skips (fails in CI) when it is not fetched
    if name in NEEDS_EMBEDDER:
        request.getfixturevalue("minilm")
    env, home = user_home
    before = snapshot(home)
    proc, wall = run_bench(name, env, "--quick")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    got, value = figure(proc.stdout)
    assert got == FIGURES[name]
    last = proc.stdout.strip().splitlines()[-1]
    if name == "bench_vs_distilabel" and "distilabel side skipped" in proc.stdout:
        assert value is None and "skipped" in last  # no second side, no ratio: said, not faked
    elif name == "bench_vs_distilabel" and value is None:
        assert "judged no sample" in last  # a side judged nothing: no ratio, and why
    else:
        assert value is not None and math.isfinite(value), proc.stdout[-2000:]
    assert snapshot(home) == before, "the bench wrote into the user's config, cache or data dir"
    if wall > QUICK_TARGET_S:
        warnings.warn(f"{name} --quick took {wall:.0f} s (target: under {QUICK_TARGET_S} s)",
                      stacklevel=1)


def test_every_bench_has_a_figure() -> None:
    assert set(FIGURES) == set(BENCHES), "add each bench's figure name to FIGURES"


@pytest.mark.bench
def test_bench_leaves_the_real_settings_alone() -> None:
    """bench_tui's app saves the last run to settings.toml: run it as the user would (the
    environment before this session moved the dirs) and check the user's file."""
    settings = REAL_DIRS["config"] / "settings.toml"
    before = state(settings)
    proc, _ = run_bench("bench_tui", REAL_ENV, "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert state(settings) == before


INNER = "GRA_LOCAL_INNER_SESSION"


@pytest.fixture(scope="session")
def saved_in_session_fixture() -> Path:
    """Settings saved before any function-scoped fixture moved the config dir: only the
    session's own override keeps these from the user's file."""
    from gra_local.tui.settings import Settings, save_settings

    return save_settings(Settings(theme="nord", default_out_dir="from-a-session-fixture"))


if os.environ.get(INNER):  # only in the session test_session_leaves_the_real_settings_alone starts
    def test_inner_session_saves_settings(saved_in_session_fixture: Path) -> None:
        from gra_local.tui.settings import Settings, save_settings

        in_test = save_settings(Settings(theme="nord", default_out_dir="from-a-test"))
        print(f"saved: {saved_in_session_fixture} {in_test}")


@pytest.mark.bench
def test_session_leaves_the_real_settings_alone() -> None:
    """A pytest session started as the user would start it saves settings (from a session
    fixture and from a test), and the user's settings.toml is as it was."""
    settings = REAL_DIRS["config"] / "settings.toml"
    before = state(settings)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         f"{Path(__file__).relative_to(REPO)}::test_inner_session_saves_settings"],
        cwd=REPO, env={**REAL_ENV, INNER: "1"}, capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = [Path(p) for line in proc.stdout.splitlines() if line.startswith("saved: ")
             for p in line.split()[1:]]
    assert len(saved) == 2, proc.stdout
    for path in saved:
        assert not path.is_relative_to(REAL_DIRS["config"]), path
    assert not saved[0].exists(), f"{saved[0]}: the session's private dirs outlived it"
    assert state(settings) == before


def test_this_session_runs_on_private_dirs() -> None:
    from conftest import embedded_model_path, embedder_dir

    from gra_local.core import paths
    from gra_local.embed.minilm_files import is_present
    from gra_local.models.embedded import default_model_path

    for kind, now in (("config", paths.config_dir()), ("cache", paths.cache_dir()),
                      ("data", paths.data_dir())):
        assert now != REAL_DIRS[kind] and not now.is_relative_to(REAL_DIRS[kind]), kind
    for var in XDG_DIRS:
        assert os.environ[var] != REAL_ENV.get(var)
    # the user's models are still found, through the shadow data dir
    if not os.environ.get("GRA_LOCAL_TEST_MODEL"):
        real_model = default_model_path(REAL_DIRS["data"])
        assert (embedded_model_path() is not None) == real_model.is_file()
    assert (embedder_dir() is not None) == is_present(REAL_DIRS["data"])

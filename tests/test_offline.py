"""Offline guarantee: `gra-local run`, `gra-local review` and the app's run path work with
every socket connect refused, and none of them tries one.

The CLI runs in real subprocesses. A `sitecustomize.py` first on PYTHONPATH (inherited by
every process they start: the hardware probe, each llama.cpp worker, whose environment
keeps PYTHONPATH) replaces
`socket.socket.connect`/`connect_ex` and `socket.create_connection` with a function that
records the address and raises OSError, and notes each process it loads in. The app runs
in this process with the same functions patched in, its workers covered the same way.
Models: tiny GGUFs (tests/ggufs.py) and the real all-MiniLM-L6-v2, so dedup runs too.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS, write_models_toml

WORKER = "gra_local.backends.llama.worker"

SITECUSTOMIZE = '''\
"""Written by tests/test_offline.py: every socket connect is recorded and refused."""
import os
import socket

RECORD, LOADED = {record!r}, {loaded!r}

with open(LOADED, "a", encoding="utf-8") as _fh:
    with open("/proc/self/cmdline", "rb") as _cmd:
        _fh.write(repr(_cmd.read().replace(b"\\0", b" ").decode(errors="replace").strip()) + "\\n")


def _refuse(address, *args, **kwargs):
    with open(RECORD, "a", encoding="utf-8") as fh:
        fh.write(f"{{os.getpid()}} {{address!r}}\\n")
    raise OSError(101, f"offline test: connect to {{address!r}} refused")


def _connect(self, address):
    return _refuse(address)


socket.socket.connect = _connect
socket.socket.connect_ex = _connect
socket.create_connection = _refuse
'''


@dataclass
class Offline:
    env: dict[str, str]
    record: Path
    loaded: Path

    def connects(self) -> list[str]:
        return self.record.read_text(encoding="utf-8").splitlines() if self.record.exists() else []

    def processes(self) -> list[str]:
        return self.loaded.read_text(encoding="utf-8").splitlines() if self.loaded.exists() else []


@pytest.fixture
def offline(tmp_path: Path) -> Offline:
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("the guard names processes through /proc (Linux)")
    site = tmp_path / "offline-site"
    site.mkdir()
    record, loaded = tmp_path / "connects.txt", tmp_path / "loaded.txt"
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(record=str(record), loaded=str(loaded)),
                                           encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    return Offline(env=env, record=record, loaded=loaded)


@pytest.fixture
def models(tmp_path: Path, tiny_gguf: Path) -> Path:
    return write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)], "n_threads = 1")


def cli(offline: Offline, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gra_local.cli", *map(str, args)], check=False,
                          env=offline.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def decided(out: Path) -> list[dict]:
    return [orjson.loads(x) for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists() for x in (out / name).read_bytes().splitlines()]


def assert_offline_and_covered(offline: Offline, command: str) -> None:
    assert offline.connects() == [], "a socket connect was tried"
    seen = offline.processes()
    assert any(WORKER in p for p in seen), seen  # the llama.cpp worker ran under the guard
    assert any(command in p for p in seen), seen


def test_the_guard_refuses_and_records_a_connect(offline: Offline) -> None:
    code = ("import socket\n"
            "for connect in (lambda: socket.create_connection(('192.0.2.1', 80), timeout=1),\n"
            "                lambda: socket.socket().connect(('192.0.2.1', 443)),\n"
            "                lambda: socket.socket().connect_ex(('192.0.2.1', 8080))):\n"
            "    try:\n"
            "        connect()\n"
            "    except OSError as exc:\n"
            "        print(exc.errno)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=offline.env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["101", "101", "101"]
    ports = [line.rsplit(", ", 1)[1] for line in offline.connects()]
    assert ports == ["80)", "443)", "8080)"]


def test_run_works_offline(tmp_path: Path, offline: Offline, models: Path, minilm) -> None:
    out = tmp_path / "out"
    proc = cli(offline, "run", EXAMPLE_SEEDS, "--out", out, "--models", models, "--samples", 1,
               "--max-attempts", 2, "--panel", 1, "--seed-pool", 3, "--tau", 0, "--judge", "panel",
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(decided(out)) == 2
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted") and run["dedup"]["enabled"]
    assert_offline_and_covered(offline, "gra_local.cli run")


def test_review_works_offline(tmp_path: Path, offline: Offline, models: Path, minilm) -> None:
    rows = [orjson.loads(x) for x in EXAMPLE_SEEDS.read_bytes().splitlines()[:3]]
    data = tmp_path / "mine.jsonl"
    data.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    out = tmp_path / "reviewed"
    proc = cli(offline, "review", data, "--out", out, "--models", models, "--panel", 1,
               "--judge", "panel", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(r["source"] for r in decided(out)) == [f"mine.jsonl line {i}" for i in (1, 2, 3)]
    assert orjson.loads((out / "run.json").read_bytes())["dedup"]["enabled"]
    assert_offline_and_covered(offline, "gra_local.cli review")


async def test_the_app_runs_offline(tmp_path: Path, offline: Offline, tiny_gguf: Path, minilm,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from gra_local.core.options import RunOptions
    from gra_local.tui.app import GraApp
    from gra_local.tui.services import Services, llama_backend
    from gra_local.tui.settings import Settings

    tried: list[object] = []

    def refuse(address: object, *args: object, **kwargs: object) -> None:
        tried.append(address)
        raise OSError(101, f"offline test: connect to {address!r} refused")

    monkeypatch.setattr(socket.socket, "connect", lambda self, address: refuse(address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: refuse(address))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("PYTHONPATH", offline.env["PYTHONPATH"])  # the workers' guard

    out = tmp_path / "out"
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)])
    options = RunOptions(samples=1, max_attempts=2, panel=1, seed_pool=3, tau=0, judge="panel")
    app = GraApp(Services(models_file=models, backend_factory=llama_backend,
                          settings=Settings(last_seeds=str(EXAMPLE_SEEDS), last_out_dir=str(out),
                                            last_run=options)), start="new_run")
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+r")
        end = asyncio.get_running_loop().time() + 120
        while not (app.current_run is not None and app.current_run.finished):
            assert asyncio.get_running_loop().time() < end, "the app's run did not finish"
            await pilot.pause(0.05)
    assert len(decided(out)) == 2
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted") and run["dedup"]["enabled"]
    assert tried == []
    assert offline.connects() == []
    assert any(WORKER in p for p in offline.processes()), offline.processes()

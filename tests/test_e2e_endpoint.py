"""End to end with an endpoint model (issue 13): `gra-local run` with a local tiny GGUF as
generator and annotator and a real llama-cpp-python server on loopback (serving a tiny GGUF,
one thread) as reviewer and adjudicator. The run completes, records and run.json name the
server, the grammar holds through the server, the API key never lands in a file; the server
killed mid-run interrupts the run in one line (exit 2), and after a restart the same command
resumes it with nothing lost or written twice."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLE_SEEDS
from endpoint_llama import LlamaServer

from gra_local.core import paths
from gra_local.core.records import Record

KEY_VAR = "GRA_TEST_JUDGE_KEY"


def models_toml(path: Path, gguf: Path, url: str, remote_generates: bool = False) -> Path:
    local, remote = '"generator", "annotator"', '"reviewer", "adjudicator"'
    if remote_generates:  # the server writes the samples; the local model judges them
        local, remote = '"annotator", "reviewer", "adjudicator"', '"generator"'
    path.write_text(f"""
[[models]]
name = "local-tiny"
path = "{gguf}"
n_ctx = 2048
n_threads = 1
roles = [{local}]

[[models]]
name = "remote"
endpoint = "{url}"
api_key_env = "{KEY_VAR}"
max_in_flight = 4
roles = [{remote}]
""", encoding="utf-8")
    return path


def cli(out: Path, models: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "gra_local.cli", "run", str(EXAMPLE_SEEDS), "--out", str(out),
            "--models", str(models), "--panel", "1", "--seed-pool", "3", "--no-dedup", "--quiet",
            "--judge", "panel",  # reviews through the server are what these tests need
            *more]


def records(out: Path) -> list[dict]:
    return [orjson.loads(line) for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists() for line in (out / name).read_bytes().splitlines()]


def files_under(*roots: Path) -> Iterator[Path]:
    """Every regular file the run could have written (links into the user's model store,
    which the data dir shadows, are not followed)."""
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                yield path


def killed_mid_run(server: LlamaServer, args: list[str], env: dict[str, str], what: str,
                   ready: Callable[[], bool]) -> tuple[str, str]:
    """Start the command, kill the server once `ready()`; the run must stop in one line
    naming the endpoint, exit 2. Its stdout and stderr."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, what
            time.sleep(0.02)
        server.kill()
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        server.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(f"gra-local: error: endpoint model 'remote' at {server.url} is unreachable")
    return stdout, stderr


def rerun_after_restart(tmp_path: Path, gguf: Path, port: int, key: str, args: list[str],
                        env: dict[str, str]) -> dict:
    """Restart the server on the same port, run the same command again: it resumes and
    ends; its run.json."""
    restarted = LlamaServer(gguf, tmp_path / "server.log", port=port, api_key=key).start()
    try:
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
    finally:
        restarted.stop()
    assert again.returncode == 0, again.stderr
    run = orjson.loads((tmp_path / "out" / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted") and len(run["sessions"]) == 2
    return run


@pytest.fixture
def key() -> str:
    return "sk-" + secrets.token_urlsafe(24)


def test_a_run_mixing_a_local_and_an_endpoint_model(tmp_path: Path, tiny_gguf: Path, key: str) -> None:
    server = LlamaServer(tiny_gguf, tmp_path / "server.log", api_key=key).start()
    try:
        out = tmp_path / "out"
        models = models_toml(tmp_path / "models.toml", tiny_gguf, server.url)
        proc = subprocess.run(cli(out, models, "--samples", "2", "--max-attempts", "6"),
                              env={**os.environ, KEY_VAR: key}, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    served = {"endpoint": server.url, "server": "llama.cpp", "served_model": str(tiny_gguf)}
    recs = records(out)
    assert recs and len(recs) <= 6
    for rec in recs:
        Record.model_validate(rec)
        refs = {m["name"]: m for m in rec["models"]}
        assert refs["local-tiny"]["quantization"] == "F32" and "endpoint" not in refs["local-tiny"]
        if "remote" in refs:
            assert {k: refs["remote"][k] for k in served} == served
            assert refs["remote"]["sha256"] is None and refs["remote"]["quantization"] is None
    reviewed = [rec for rec in recs if rec["reviews"] and rec["reviews"][0]["verdict"] is not None]
    assert reviewed and {rec["reviewers"][0] for rec in reviewed} == {"remote"}
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] in ("complete", "exhausted")
    assert {k: run["models"]["remote"][k] for k in served} == served
    assert run["models"]["remote"]["server_version"].startswith("llama-cpp-python ")
    assert run["identity"]["models"]["remote"]["served"]["model"] == str(tiny_gguf)
    assert run["loads"] == {"local-tiny": 1, "remote": 1}
    assert run["residency"]["cost_bytes"]["remote"] == 0
    # the grammar travelled in the request's `grammar` field: valid judge output through the server
    validity = run["judge_validity"]["remote"]
    assert validity["structured_calls"] > 0 and validity["valid"] > 0
    # the key was needed (the server refuses requests without it) and is written nowhere
    assert run["config"]["models"][1]["api_key_env"] == KEY_VAR
    assert key not in proc.stdout + proc.stderr
    written = list(files_under(out, paths.cache_dir(), paths.config_dir(), paths.data_dir()))
    assert any(p.name == "run.json" for p in written) and any(p.parent.name == "logs" for p in written)
    assert [p for p in written if key.encode() in p.read_bytes()] == []


def test_a_server_killed_mid_run_interrupts_and_a_restart_resumes(tmp_path: Path, tiny_gguf: Path,
                                                                  key: str) -> None:
    server = LlamaServer(tiny_gguf, tmp_path / "server.log", api_key=key).start()
    out = tmp_path / "out"
    models = models_toml(tmp_path / "models.toml", tiny_gguf, server.url)
    args = cli(out, models, "--samples", "60", "--max-attempts", "60", "--batch", "3")
    env = {**os.environ, KEY_VAR: key}
    # mid-run: the reviews of the batches still to come have no server
    stdout, stderr = killed_mid_run(server, args, env, "no review through the server", lambda: any(
        r["reviews"] and r["reviews"][0]["verdict"] for r in records(out)))
    assert "rerun the same command to resume" in stderr and key not in stdout + stderr
    run = orjson.loads((out / "run.json").read_bytes())
    assert run["status"] == "interrupted"
    assert run["worker_failures"]["remote"]["dropped"]
    before = [r["id"] for r in records(out)]
    assert 0 < len(before) < 60
    # the outage became no verdict: no record says its model gave no reply (issue 21)
    assert not [r["id"] for r in records(out) if "no reply" in r["reason_detail"]]
    assert "no reply (the model's worker failed)" not in str(run["judge_validity"])
    kept = {name: (out / name).read_bytes() for name in ("accepted.jsonl", "rejected.jsonl")
            if (out / name).exists()}

    run = rerun_after_restart(tmp_path, tiny_gguf, server.port, key, args, env)
    after = [r["id"] for r in records(out)]
    for name, lines in kept.items():  # what was decided stays, as it was, first
        assert (out / name).read_bytes().startswith(lines)
    assert set(before) < set(after)
    assert sorted(after) == [f"r1-{n:06d}" for n in range(1, run["counts"]["attempts"] + 1)]
    assert len(after) == run["counts"]["accepted"] + run["counts"]["rejected"]


def test_a_server_killed_mid_generate_is_no_verdict_and_a_restart_resumes(tmp_path: Path,
                                                                          tiny_gguf: Path,
                                                                          key: str) -> None:
    """Issue 21: the server is the generator and dies while it writes the first batch. No
    sample is rejected for it (no `generation_failed` "no reply"): the run stops
    interrupted in one line, and the same command after a restart finishes every id once."""
    server = LlamaServer(tiny_gguf, tmp_path / "server.log", api_key=key).start()
    out = tmp_path / "out"
    models = models_toml(tmp_path / "models.toml", tiny_gguf, server.url, remote_generates=True)
    args = cli(out, models, "--samples", "3", "--max-attempts", "6", "--batch", "3")
    env = {**os.environ, KEY_VAR: key}
    # annotated: generation comes next
    killed_mid_run(server, args, env, "the run never got to generate", (out / "pool.jsonl").exists)
    first = orjson.loads((out / "run.json").read_bytes())
    assert first["status"] == "interrupted"
    assert not [r["id"] for r in records(out) if r["reason"] == "generation_failed"]
    # nor counted as the model's invalid replies: the outage's calls were asked again
    assert "no reply" not in str(first["stats"]["models"].get("remote", {}))

    rerun_after_restart(tmp_path, tiny_gguf, server.port, key, args, env)
    ids = [r["id"] for r in records(out)]
    assert len(ids) == len(set(ids)) and ids
    assert not [r["id"] for r in records(out) if "no reply" in r["reason_detail"]]

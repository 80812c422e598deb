"""`models add --endpoint`, `models list` and `doctor` with endpoint models, through the
CLI, against llama-cpp-python's own server on loopback and a closed port: what each shows,
the hosts line, nothing contacted offline or for GGUF-only registries, one-line errors,
and the key's value never printed."""

from __future__ import annotations

import json
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest
from conftest import write_models_toml

from gra_local import cli
from gra_local.commands import inspect as inspect_cmd
from gra_local.commands import models as models_cmd
from gra_local.core import paths
from gra_local.models.hardware import Hardware, LlamaBuild

sys.path.insert(0, str(Path(__file__).parent.parent / "backends" / "endpoint"))
from endpoint_fakes import refused_url  # noqa: E402
from endpoint_llama import LlamaServer  # noqa: E402

GIB = 1 << 30
SERVER = f"llama.cpp server (llama-cpp-python {llama_cpp.__version__})"


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(tiny_gguf, tmp_path_factory.mktemp("llama-server") / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"sk-{secrets.token_hex(16)}"
    monkeypatch.setenv("GRA_TEST_KEY", value)
    return value


@pytest.fixture(autouse=True)
def fixed_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Hardware(system="Linux", machine="x86_64", cpu_logical=4, cpu_physical=2,
                       ram_total_bytes=16 * GIB, ram_available_bytes=12 * GIB,
                       llama=LlamaBuild(version="0.3.36", backends=["CPU"], backend="CPU"))
    monkeypatch.setattr(inspect_cmd, "probe", lambda: machine)
    monkeypatch.setattr(models_cmd, "probe", lambda: machine)


@pytest.fixture
def no_connects(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every socket connect in this process is refused and recorded."""
    tried: list[object] = []

    def refuse(*args: object) -> None:
        tried.append(args[-1])
        raise ConnectionRefusedError("offline test: no connect allowed")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tried


def gra(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_and_doctor_against_a_real_server(
        llama_server: LlamaServer, tiny_gguf: Path, secret: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = llama_server.url.removesuffix("/v1")  # "/v1" is added to a bare host
    code, out, err = gra(capsys, "models", "add", "--endpoint", base, "--api-key-env", "GRA_TEST_KEY",
                         "--roles", "reviewer,adjudicator")
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert lines[0] == f"checking {llama_server.url} (contacts the server once; --no-check skips this)…"
    assert lines[1].startswith(f"  {llama_server.url}  up ") and lines[1].endswith(
        f" ms: {SERVER}, model {tiny_gguf}")
    assert lines[2].startswith(f"registered 'tiny' (endpoint {llama_server.url}, model '{tiny_gguf}') in ")
    closed = refused_url()
    code, out, err = gra(capsys, "models", "add", "--endpoint", closed, "--name", "gone", "--no-check")
    assert code == 0 and "not checked (--no-check)" in out and "checking" not in out
    assert gra(capsys, "models", "add", str(tiny_gguf), "--name", "local")[0] == 0
    saved = paths.user_registry_path().read_text(encoding="utf-8")
    assert 'api_key_env = "GRA_TEST_KEY"' in saved and f'model = "{tiny_gguf}"' in saved

    code, out, err = gra(capsys, "models", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    tiny = lines.index(next(ln for ln in lines if ln.startswith("  tiny ")))
    assert lines[tiny].split(None, 1)[1] == (
        f"endpoint, 1 of 1 server(s) up; model {tiny_gguf}; key from $GRA_TEST_KEY; 4 in flight "
        "per server; roles reviewer,adjudicator")
    assert lines[tiny + 1].startswith(f"    {llama_server.url}  up ") and SERVER in lines[tiny + 1]
    gone = lines.index(next(ln for ln in lines if ln.startswith("  gone ")))
    assert "0 of 1 server(s) up; model: the only one it serves; no key" in lines[gone]
    assert lines[gone + 1].startswith(f"    {closed}  unreachable: cannot connect (")
    assert any(ln.startswith("  local ") and "F32" in ln for ln in lines)

    code, out, err = gra(capsys, "doctor")
    assert code == 1 and err == ""  # the closed port is a problem
    port, closed_port = llama_server.port, closed.split(":")[2].split("/")[0]
    assert f"hosts a run would contact: 127.0.0.1:{port}, 127.0.0.1:{closed_port}" in out
    assert f"endpoint model 'gone': {closed} unreachable: cannot connect (" in out
    assert "fix: start that server, or correct its endpoint in" in out
    assert "1 problem(s):" in out  # the server that answers is none
    code, out, err = gra(capsys, "doctor", "--json")
    data = json.loads(out)
    assert data["hosts"] == [f"127.0.0.1:{port}", f"127.0.0.1:{closed_port}"]
    by_name = {m["name"]: m for m in data["models"]}
    (server,) = by_name["tiny"]["servers"]
    assert (server["state"], server["kind"], server["model"]) == ("up", "llama.cpp", str(tiny_gguf))
    assert server["version"] == f"llama-cpp-python {llama_cpp.__version__}"
    assert server["listed"] == [str(tiny_gguf)] and server["rtt_ms"] > 0
    assert by_name["tiny"]["usable"] is True and by_name["gone"]["usable"] is False
    assert by_name["gone"]["servers"][0]["state"] == "down" and by_name["local"]["usable"] is True
    assert secret not in out + saved  # the key's value: never printed, never written
    code, out, _ = gra(capsys, "models", "remove", "gone")
    assert code == 0 and out.endswith("(its server is untouched)\n")


def test_offline_list_contacts_nothing(llama_server: LlamaServer, no_connects: list[object],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert gra(capsys, "models", "add", "--endpoint", llama_server.url, "--no-check")[0] == 0
    code, out, _ = gra(capsys, "models", "list", "--offline")
    assert code == 0 and f"    {llama_server.url}  not checked: offline" in out
    assert "endpoint, not checked; model: the only one it serves" in out
    code, out, _ = gra(capsys, "doctor", "--offline")
    assert f"hosts a run would contact: 127.0.0.1:{llama_server.port}" in out
    assert code == 0 and "no problems found" in out  # not checked is no problem
    assert no_connects == []


def test_an_unset_key_variable_is_a_problem_and_contacts_nothing(
        llama_server: LlamaServer, no_connects: list[object], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GRA_UNSET_KEY", raising=False)
    assert gra(capsys, "models", "add", "--endpoint", llama_server.url, "--no-check",
               "--api-key-env", "GRA_UNSET_KEY")[0] == 0
    code, out, _ = gra(capsys, "doctor")
    assert code == 1 and "1 problem(s):" in out
    assert ("not checked: environment variable GRA_UNSET_KEY (its api_key_env) is not set\n"
            "    fix: export GRA_UNSET_KEY=<its key> before the run") in out
    assert no_connects == []


def test_gguf_only_registries_contact_nothing(tmp_path: Path, tiny_gguf: Path, no_connects: list[object],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    models = write_models_toml(tmp_path / "models.toml", [("tiny", tiny_gguf)])
    code, out, _ = gra(capsys, "doctor", "--models", str(models))
    assert code == 0 and "hosts a run would contact: none: every model is a local GGUF file" in out
    assert json.loads(gra(capsys, "doctor", "--json", "--models", str(models))[1])["hosts"] == []
    assert gra(capsys, "models", "list", "--models", str(models))[0] == 0
    assert no_connects == []


@pytest.mark.parametrize(("argv", "expected"), [
    (["--endpoint", "http://admin:hunter2@gpu-box:8080/v1"],
     "--endpoint http://gpu-box:8080/v1: a base URL takes no credentials, query or fragment"),
    (["--endpoint", "http:///v1"], "--endpoint http://:80/v1: no host"),
    (["--endpoint", "ftp://gpu-box/v1"], "only http:// and https:// URLs are served"),
    (["--endpoint", "CLOSED"], "unreachable: cannot connect ("),
    (["--endpoint", "http://gpu-box/v1", "--no-check", "--api-key-env", "1BAD"],
     "--api-key-env '1BAD': String should match pattern"),
    (["--endpoint", "CLOSED", "--name", "bad name"], "--name 'bad name': "),  # before any contact
    (["PATH", "--endpoint", "http://gpu-box/v1"], "give a GGUF PATH or --endpoint URL, not both"),
    (["PATH", "--model", "x"], "--model apply to --endpoint models only"),
    ([], "give a GGUF file (PATH) or a server (--endpoint URL)"),
])
def test_bad_adds_are_one_line_errors(argv: list[str], expected: str, tiny_gguf: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    argv = [{"CLOSED": refused_url(), "PATH": str(tiny_gguf)}.get(a, a) for a in argv]
    code, _, err = gra(capsys, "models", "add", *argv)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert err.startswith("gra-local: error: ") and "hunter2" not in err and "admin" not in err
    assert not paths.user_registry_path().exists()

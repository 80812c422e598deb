"""Discovery over temporary trees shaped like plain folders, the Hugging Face hub cache,
Ollama's store and LM Studio's folder; the user's real folders are never scanned."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import pytest
from ggufs import write_not_gguf, write_tiny_gguf, write_truncated_gguf

from gra_local.commands.discover import describe, discover_command
from gra_local.core import paths
from gra_local.core.config import Role, load_registry
from gra_local.models import discover as disc
from gra_local.models import found as found_mod
from gra_local.models.discover import discover
from gra_local.models.found import default_locations, suggest_name
from gra_local.models.registry import register_found

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")


@pytest.fixture(autouse=True)
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with nothing in it and none of the tools' variables set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "OLLAMA_MODELS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(found_mod, "LINUX_SERVICE_OLLAMA", tmp_path / "no-service-ollama")
    return home


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("src") / "t.gguf").read_bytes()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def by_name(result: disc.DiscoveryResult) -> dict[str, disc.Found]:
    return {f.name: f for f in result.found}


def test_folder_any_depth_and_broken_files_are_reported(tmp_path: Path, gguf_bytes: bytes) -> None:
    root = tmp_path / "models"
    put(root / "a" / "b" / "c" / "deep-model.Q4_0.gguf", gguf_bytes)
    put(root / "Upper.GGUF", gguf_bytes)
    write_not_gguf(put(root / "x" / "fake.gguf", b""))
    write_truncated_gguf(root / "x" / "cut.gguf")
    put(root / "notes.txt", b"hello")
    result = discover([root], include_defaults=False)
    found = by_name(result)
    assert set(found) == {"cut", "deep-model.Q4_0", "fake", "Upper"}
    assert [f.name.lower() for f in result.found] == sorted(f.name.lower() for f in result.found)
    deep = found["deep-model.Q4_0"]
    assert deep.usable and deep.source == "folder" and deep.info is not None
    assert deep.info.architecture == "llama" and deep.size_bytes == len(gguf_bytes)
    assert deep.path == (root / "a" / "b" / "c" / "deep-model.Q4_0.gguf").resolve()
    assert found["Upper"].usable
    assert not found["fake"].usable and "not a GGUF file" in (found["fake"].problem or "")
    assert "truncated" in (found["cut"].problem or "")
    assert result.warnings == [] and result.scanned == [("folder", root)]
    assert "PROBLEM: not a GGUF file" in describe(found["fake"])


def test_split_gguf_is_one_model(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        write_tiny_gguf(tmp_path / "m" / f"big-model-0000{i}-of-00003.gguf",
                        extra_kv={"split.count": 3, "split.no": i - 1})
    for i in (1, 3):  # part 2 of this set is missing
        write_tiny_gguf(tmp_path / "m" / f"gappy-0000{i}-of-00003.gguf", extra_kv={"split.count": 3})
    found = by_name(discover([tmp_path / "m"], include_defaults=False))
    assert set(found) == {"big-model", "gappy"}
    big = found["big-model"]
    assert big.usable and len(big.parts) == 3 and big.path.name == "big-model-00001-of-00003.gguf"
    assert big.size_bytes == sum(p.stat().st_size for p in big.parts)
    assert "(3 parts)" in describe(big)
    assert not found["gappy"].usable and "part 2 of 3 missing" in (found["gappy"].problem or "")


def test_first_part_alone_is_incomplete_by_its_header(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "lonely.gguf", extra_kv={"split.count": 2})
    (f,) = discover([tmp_path], include_defaults=False).found
    assert f.problem == "split model is incomplete: the header says 2 parts, found 1"


def make_hf_cache(hub: Path, data: bytes) -> Path:
    repo = hub / "models--Qwen--Qwen2.5-0.5B-Instruct-GGUF"
    put(repo / "blobs" / ("ab" * 32), data)
    for rev in ("rev1", "rev2"):
        snap = repo / "snapshots" / rev
        snap.mkdir(parents=True)
        (snap / "qwen2.5-0.5b-q4_0.gguf").symlink_to(Path("../..") / "blobs" / ("ab" * 32))
    put(repo / "refs" / "main", b"rev2\n")
    put(hub / "datasets--someone--data" / "snapshots" / "r" / "x.gguf", data)  # not a model repo
    return repo


def test_hf_cache_two_revisions_of_one_blob_are_one_model(
        tmp_path: Path, gguf_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_hf_cache(tmp_path / "hub", gguf_bytes)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = discover(None)
    (f,) = result.found
    assert f.source == "huggingface" and f.usable
    assert f.name == "Qwen--Qwen2.5-0.5B-Instruct-GGUF--qwen2.5-0.5b-q4_0"
    assert f.path == repo / "snapshots" / "rev2" / "qwen2.5-0.5b-q4_0.gguf"  # refs/main wins
    assert f.real_path == (repo / "blobs" / ("ab" * 32)).resolve()
    assert result.scanned == [("huggingface", tmp_path / "hub")]


def test_hf_home_and_a_named_cache_folder(tmp_path: Path, gguf_bytes: bytes,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_hf_cache(tmp_path / "hf" / "hub", gguf_bytes)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert ("huggingface", tmp_path / "hf" / "hub") in default_locations()
    assert [f.source for f in discover(None).found] == ["huggingface"]
    # the same cache named on the command line is recognised and reported once
    (f,) = discover([tmp_path / "hf" / "hub"]).found
    assert f.source == "huggingface" and f.duplicates == []


def ollama_manifest(store: Path, namespace: str, model: str, tag: str, digest: str,
                    host: str = "registry.ollama.ai") -> Path:
    data = {"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"},
    ]}
    return put(store / "manifests" / host / namespace / model / tag, json.dumps(data).encode())


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_ollama_store_named_as_ollama_names_them(tmp_path: Path, gguf_bytes: bytes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "ollama"
    qwen, tiny, gone = "1" * 64, "2" * 64, "3" * 64
    put(store / "blobs" / f"sha256-{qwen}", gguf_bytes)
    write_tiny_gguf(store / "blobs" / f"sha256-{tiny}", name="other")
    ollama_manifest(store, "library", "qwen2.5", "1.5b", qwen)
    ollama_manifest(store, "library", "qwen2.5", "latest", qwen)  # another tag, same blob
    ollama_manifest(store, "alice", "tiny", "v1", tiny)
    ollama_manifest(store, "library", "gone", "latest", gone)  # blob missing
    put(store / "manifests" / "registry.ollama.ai" / "library" / "bad" / "latest", b"{not json")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    before = snapshot(store)
    result = discover(None)
    assert snapshot(store) == before  # read-only
    found = by_name(result)
    assert set(found) == {"qwen2.5:1.5b", "alice--tiny:v1"}
    assert all(f.source == "ollama" and f.usable for f in result.found)
    assert found["qwen2.5:1.5b"].path == store / "blobs" / f"sha256-{qwen}"
    assert [d.name for d in found["qwen2.5:1.5b"].duplicates] == ["qwen2.5:latest"]
    assert any("Ollama model gone:latest" in w and "missing" in w for w in result.warnings)
    assert any("bad" in w and "not a valid Ollama manifest" in w for w in result.warnings)
    assert disc.ollama_name("registry.ollama.ai", "alice", "tiny", "v1") == "alice/tiny:v1"
    assert disc.ollama_name("hf.co", "org", "repo", "Q4_K_M") == "hf.co/org/repo:Q4_K_M"


def test_ollama_default_home_location(fake_home: Path, gguf_bytes: bytes) -> None:
    store = fake_home / ".ollama" / "models"
    put(store / "blobs" / f"sha256-{'4' * 64}", gguf_bytes)
    ollama_manifest(store, "library", "smol", "135m", "4" * 64)
    assert [(f.name, f.source) for f in discover(None).found] == [("smol:135m", "ollama")]


def test_lm_studio_folders(fake_home: Path, gguf_bytes: bytes) -> None:
    put(fake_home / ".lmstudio" / "models" / "pub" / "repo" / "chat-q8_0.gguf", gguf_bytes)
    write_tiny_gguf(fake_home / ".cache" / "lm-studio" / "models" / "p" / "r" / "old.gguf",
                    name="old")
    write_tiny_gguf(fake_home / ".lmstudio" / "models" / "pub" / "repo" / "mmproj.gguf",
                    architecture="clip")
    found = by_name(discover(None))
    assert {f.source for f in found.values()} == {"lmstudio"}
    assert found["chat-q8_0"].usable and found["old"].usable
    assert "vision projector" in (found["mmproj"].problem or "")


def test_unreadable_subfolder_does_not_stop_the_scan(tmp_path: Path, gguf_bytes: bytes,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "m"
    put(root / "ok" / "good.gguf", gguf_bytes)
    put(root / "secret" / "hidden.gguf", gguf_bytes)
    put(root / "zzz" / "late.gguf", gguf_bytes)
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(str(path)).name == "secret":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    result = discover([root], include_defaults=False)
    assert set(by_name(result)) == {"good", "late"}
    assert result.warnings == [f"{root / 'secret'}: cannot read folder (permission denied), skipped"]


def test_chmod_000_subfolder(tmp_path: Path, gguf_bytes: bytes) -> None:
    root = tmp_path / "m"
    put(root / "ok" / "good.gguf", gguf_bytes)
    locked = root / "locked"
    put(locked / "hidden.gguf", gguf_bytes)
    locked.chmod(0)
    try:
        try:
            os.listdir(locked)
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads a chmod 000 folder (root, or no POSIX permissions)")
        result = discover([root], include_defaults=False)
    finally:
        locked.chmod(0o755)
    assert set(by_name(result)) == {"good"}
    assert any("locked" in w and "permission denied" in w for w in result.warnings)


def test_symlink_loop_terminates(tmp_path: Path, gguf_bytes: bytes) -> None:
    root = tmp_path / "m"
    put(root / "a" / "model.gguf", gguf_bytes)
    (root / "a" / "up").symlink_to(root, target_is_directory=True)  # a/up -> m
    (root / "self.gguf").symlink_to(root / "self.gguf")  # a file link to itself
    result = discover([root], include_defaults=False)
    assert [f.name for f in result.found] == ["model"]
    assert any("symlink loop" in w for w in result.warnings)
    assert any("self.gguf" in w for w in result.warnings)


def test_same_file_via_two_folders_and_a_link_is_one_model(tmp_path: Path, gguf_bytes: bytes) -> None:
    real = put(tmp_path / "store" / "sub" / "model.gguf", gguf_bytes)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "alias.gguf").symlink_to(real)
    result = discover([tmp_path / "store", tmp_path / "store" / "sub", tmp_path / "links"],
                      include_defaults=False)
    (f,) = result.found
    assert f.real_path == real.resolve()
    assert {d.path for d in f.duplicates} == {tmp_path / "links" / "alias.gguf"}


def test_hash_dedupe_of_identical_copies(tmp_path: Path, gguf_bytes: bytes) -> None:
    put(tmp_path / "a" / "copy1.gguf", gguf_bytes)
    put(tmp_path / "b" / "copy2.gguf", gguf_bytes)
    write_tiny_gguf(tmp_path / "c" / "different.gguf", name="another name, same size?")
    assert len(discover([tmp_path], include_defaults=False).found) == 3
    result = discover([tmp_path], include_defaults=False, hash_dedupe=True)
    assert sorted(f.name for f in result.found) == ["copy1", "different"]
    assert [d.name for d in by_name(result)["copy1"].duplicates] == ["copy2"]
    assert (paths.cache_dir() / "sha256.json").is_file()


def test_missing_folder_is_a_warning(tmp_path: Path) -> None:
    result = discover([tmp_path / "nope"], include_defaults=False)
    assert result.found == [] and result.warnings == [f"{tmp_path / 'nope'}: no such folder, skipped"]


def test_suggested_names_are_valid_registry_names() -> None:
    for raw in ("my model (v2)!", "../weird/name", "__x", "日本語", "a" * 200, "org/repo:tag"):
        name = suggest_name(raw)
        assert NAME_PATTERN.match(name) and len(name) <= 80, (raw, name)
    assert suggest_name("org/repo:tag") == "org--repo:tag"


def test_default_locations_follow_the_environment(fake_home: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    locs = default_locations()
    assert ("huggingface", fake_home / ".cache" / "huggingface" / "hub") in locs
    assert ("ollama", fake_home / ".ollama" / "models") in locs
    assert ("lmstudio", fake_home / ".lmstudio" / "models") in locs
    assert ("lmstudio", fake_home / ".cache" / "lm-studio" / "models") in locs
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ("huggingface", tmp_path / "xdg" / "huggingface" / "hub") in default_locations()
    (tmp_path / "empty-ollama").mkdir()
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "empty-ollama"))  # nothing pulled yet
    result = discover(None)
    assert result.scanned == [("ollama", tmp_path / "empty-ollama")] and result.warnings == []
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hfc"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "ignored"))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "om"))
    locs = default_locations()
    assert ("huggingface", tmp_path / "hfc") in locs and ("ollama", tmp_path / "om") in locs
    assert discover(None).scanned == []  # none of them exists


def test_discover_command_add_writes_a_loadable_registry(
        tmp_path: Path, gguf_bytes: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    put(tmp_path / "a" / "model.gguf", gguf_bytes)
    put(tmp_path / "b" / "model.gguf", gguf_bytes)  # same name: registered as model-2
    write_tiny_gguf(tmp_path / "a" / "plain.gguf", chat_template=None)
    write_not_gguf(put(tmp_path / "a" / "junk.gguf", b""))
    user = paths.user_registry_path()
    user.parent.mkdir(parents=True)
    user.write_text('[[models]]\nname = "model"\npath = "elsewhere.gguf"\n', encoding="utf-8")
    args = argparse.Namespace(dirs=[str(tmp_path)], add=True, no_defaults=True, hash=False)
    assert discover_command(args) == 0
    out = capsys.readouterr().out
    registry = load_registry(user)
    names = {m.name: m for m in registry.models}
    assert set(names) == {"model", "model-2", "model-3"}
    assert {Path(names[n].path) for n in ("model-2", "model-3")} == {
        tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"}
    assert names["model-2"].roles == list(Role)
    assert "not added plain: no chat template" in out and "PROBLEM" in out
    assert "4 model(s) found: 3 usable, 1 with problems" in out
    assert "2 model(s) added to" in out
    # a second run finds everything registered already and leaves the file alone
    text = user.read_text(encoding="utf-8")
    assert discover_command(args) == 0
    assert user.read_text(encoding="utf-8") == text
    assert "0 model(s) added" in capsys.readouterr().out


def test_register_found_creates_the_registry(tmp_path: Path, gguf_bytes: bytes) -> None:
    odd = put(tmp_path / 'dir "quoted" \\ back' / "m.gguf", gguf_bytes)
    result = discover([odd.parent], include_defaults=False)
    user, added, skipped = register_found(result.found)
    assert user == paths.user_registry_path()
    assert [n for n, _ in added] == ["m"] and skipped == []
    assert load_registry(user).models[0].path == str(odd)
    assert not any(p.name.endswith(".tmp") for p in user.parent.iterdir())


def test_register_found_appends_to_a_registry_written_by_add(tmp_path: Path, gguf_bytes: bytes) -> None:
    """One writer for the user registry: discover --add after models add/pull-default."""
    from gra_local.models.registry import add_model, register_default

    register_default()
    add_model(put(tmp_path / "first" / "a.gguf", gguf_bytes))
    second = put(tmp_path / "second" / "b.gguf", gguf_bytes + b"")
    result = discover([second.parent], include_defaults=False)
    user, added, _ = register_found(result.found)
    assert [n for n, _ in added] == ["b"]
    assert [m.name for m in load_registry(user).models] == ["smollm2-135m", "a", "b"]

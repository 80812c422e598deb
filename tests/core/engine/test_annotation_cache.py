"""The annotation cache: fsynced lines, and a damaged file is never fatal (its valid lines
are kept, the rest annotated again, one warning)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fakes import FakeBackend
from test_scheduler import request

from gra_local.core.engine.annotate import AnnotationCache
from gra_local.core.engine.scheduler import Run
from gra_local.core.events import Event, Notice
from gra_local.core.records import Annotation
from gra_local.core.rundir import journal as j

SHA = "ab" * 32
ANN = Annotation(domain="math", keywords=["sum", "list", "loop"], summary="Adding numbers.")


def line(key: str) -> bytes:
    return orjson.dumps({"key": key, "annotation": ANN.model_dump()}) + b"\n"


def test_put_appends_fsynced_lines_a_new_cache_reads_back(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr("os.fsync", synced.append)
    cache = AnnotationCache(tmp_path, SHA)
    cache.put("k1", ANN)
    cache.close()
    assert len(synced) == 2  # the new file's folder, then the line
    assert AnnotationCache(tmp_path, SHA).entries == {"k1": ANN}


def test_damaged_cache_keeps_its_valid_lines_warns_once_and_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "annotations" / f"{SHA[:24]}.jsonl"
    path.parent.mkdir()
    path.write_bytes(line("k1") + b"{not json\n" + b'{"key": "k3", "annotation": {"domain": 5}}\n'
                     + line("k4") + line("k5")[:20])
    warnings: list[str] = []
    cache = AnnotationCache(tmp_path, SHA, warnings.append)
    assert sorted(cache.entries) == ["k1", "k4"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith(f"annotation cache {path}: damaged (line 2: not valid JSON and 2 more)")
    assert path.read_bytes() == line("k1") + line("k4")  # the bad lines are gone
    cache.put("k5", ANN)
    cache.close()
    again: list[str] = []
    assert sorted(AnnotationCache(tmp_path, SHA, again.append).entries) == ["k1", "k4", "k5"]
    assert again == []


def test_a_bad_line_in_the_cache_is_reannotated_not_fatal(tmp_path: Path) -> None:
    first = request(tmp_path / "first", ["a"], samples=1)
    Run(first, FakeBackend()).execute()
    (path,) = (first.cache_dir / "annotations").glob("*.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 8  # one per seed of the pool
    path.write_bytes(b"".join(lines[:3]) + b"garbage\n" + b"".join(lines[4:]))

    second = request(tmp_path / "second", ["a"], samples=1)
    second.cache_dir = first.cache_dir
    events: list[Event] = []
    backend = FakeBackend()
    assert Run(second, backend, events.append).execute().status == "complete"
    warned = [e.message for e in events if isinstance(e, Notice) and "annotation cache" in e.message]
    assert len(warned) == 1 and "line 4: not valid JSON" in warned[0]
    assert len([c for c in backend.calls if c.role == "annotate"]) == 1  # only the lost one
    assert (tmp_path / "second" / j.POOL).read_bytes() == (tmp_path / "first" / j.POOL).read_bytes()
    assert len(path.read_bytes().splitlines()) == 8


def test_an_endpoint_models_annotations_are_keyed_by_the_model_it_served() -> None:
    """A GGUF model is keyed by its sha256 (keys unchanged); an endpoint model, which has
    none, by the model id and server: another model behind the same name annotates anew."""
    import hashlib

    from gra_local.core import prompts
    from gra_local.core.engine.annotate import _cache_key
    from gra_local.core.records import ModelRef
    from gra_local.core.seeds.scan import Seed

    seed = Seed(line=1, instruction="Add two numbers.", response="Sum them.")
    local = ModelRef(name="smol", sha256=SHA, quantization="Q4_1")
    before = f"{prompts.PROMPT_VERSION}|smol|{SHA}|Add two numbers.|Sum them."
    assert _cache_key(seed, local) == hashlib.sha256(before.encode()).hexdigest()[:32]
    served = ModelRef(name="judge", endpoint="http://gpu-box:8080/v1", served_model="qwen2.5-7b")
    other = served.model_copy(update={"served_model": "llama-3.1-8b"})
    elsewhere = served.model_copy(update={"endpoint": "http://other-box:8080/v1"})
    keys = {_cache_key(seed, ref) for ref in (served, other, elsewhere)}
    assert len(keys) == 3 and _cache_key(seed, served) == _cache_key(seed, served.model_copy())


def test_an_invalid_annotation_is_cached_so_a_warm_rerun_builds_the_same_pool(tmp_path: Path) -> None:
    """A seed whose annotation stays invalid is cached as such: the rerun skips it as the
    first run did instead of asking again (in a smaller batch, whose reply could differ),
    so a warm cache gives the pool a cold one gives (issue 21, reruns reproduce)."""
    chosen: list[str] = []

    def invalid_for_one_seed(call):  # the first seed asked about stays invalid
        if call.role != "annotate":
            return None
        user = call.request.messages[-1]["content"]
        chosen[:] = chosen or [user]
        return "not json" if user == chosen[0] else None

    first = request(tmp_path / "first", ["a"], samples=1)
    backend = FakeBackend(invalid_for_one_seed)
    Run(first, backend).execute()
    asked = [c for c in backend.calls if c.role == "annotate"]
    (path,) = (first.cache_dir / "annotations").glob("*.jsonl")
    cached = [orjson.loads(x)["annotation"] for x in path.read_bytes().splitlines()]
    assert len(asked) == 9 and cached.count(None) == 1  # 8 seeds, the invalid one asked twice

    second = request(tmp_path / "second", ["a"], samples=1)
    second.cache_dir = first.cache_dir
    again = FakeBackend()  # would annotate it validly now
    Run(second, again).execute()
    assert [c for c in again.calls if c.role == "annotate"] == []
    assert (tmp_path / "second" / j.POOL).read_bytes() == (tmp_path / "first" / j.POOL).read_bytes()

"""What resume makes of a run directory's run.json: the identity check against today's
settings (schema 1 migrated), the refusal of another schema, which an empty run does not
get (it is discarded), and a run.json that is not one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gra_local.core.errors import OutputError
from gra_local.core.rundir import journal as j
from gra_local.core.rundir import resume
from gra_local.core.rundir.report import RunIdentity

IDENTITY = RunIdentity(seeds_sha256="a" * 64,
                       options={"panel": 3, "tau": 8.0, "dedup_threshold": None, "minhash": None,
                                "canaries": 0, "calibration": None, "min_canary_accuracy": None},
                       models={"gen": {"sha256": "b" * 64}})


def write_run_json(out: Path, doc: dict) -> None:
    out.mkdir(exist_ok=True)
    (out / j.RUN_JSON).write_bytes(orjson.dumps(doc))


def test_same_identity_resumes_and_schema_1_gets_its_implicit_options(tmp_path: Path) -> None:
    v1 = IDENTITY.model_dump(mode="json")
    v1["options"] = {"panel": 3, "tau": 8.0}  # schema 1 knew no dedup or canaries
    write_run_json(tmp_path, {"schema_version": 1, "identity": v1})
    state = resume.load_state(tmp_path)
    assert state.previous is not None and state.previous.schema_version == 1
    resume.check_identity(tmp_path, state, IDENTITY)  # no refusal
    assert state.previous.identity is not None
    migrated = resume.migrate_identity(state.previous.identity, 1)
    assert migrated.options == IDENTITY.options


def test_other_settings_are_refused_naming_each(tmp_path: Path) -> None:
    write_run_json(tmp_path, {"schema_version": 2, "identity": IDENTITY.model_dump(mode="json")})
    changed = IDENTITY.model_copy(update={"options": {**IDENTITY.options, "tau": 7.0}})
    with pytest.raises(OutputError, match=r"other settings \(options.tau: 8.0 → 7.0\)"):
        resume.check_identity(tmp_path, resume.load_state(tmp_path), changed)


def test_another_schema_is_refused_unless_the_run_left_nothing(tmp_path: Path) -> None:
    write_run_json(tmp_path, {"schema_version": 99, "counts": "of another shape"})
    state = resume.load_state(tmp_path)
    assert state.previous is None and state.has_run_json
    assert state.other_schema is not None and state.other_schema.version == 99
    assert resume.nothing_done(state)  # the scheduler discards such a run instead
    (tmp_path / j.ACCEPTED).write_bytes(b"")
    with pytest.raises(OutputError, match=r"another version of gra-local \(schema 99; this one "
                                          r"reads 1, 2\); use --restart"):
        resume.check_identity(tmp_path, resume.load_state(tmp_path), IDENTITY)


def test_a_run_json_that_is_not_one_says_how_to_start_over(tmp_path: Path) -> None:
    write_run_json(tmp_path, {"schema_version": 2, "sessions": "yesterday"})
    with pytest.raises(OutputError, match=r"run.json: not a gra-local run.json \(sessions: .*; "
                                          "use --restart to move it aside"):
        resume.load_state(tmp_path)


def test_run_and_review_never_share_a_directory(tmp_path: Path) -> None:
    """`review DATA --out D` on a run directory (or `run` on a review one) is refused in one
    line; a run.json written before the mode was recorded is not checked for it."""
    for was, now in (("run", "review"), ("review", "run")):
        out = tmp_path / was
        write_run_json(out, {"schema_version": 2,
                             "identity": IDENTITY.model_copy(update={"mode": was}).model_dump(mode="json")})
        with pytest.raises(OutputError) as err:
            resume.check_identity(out, resume.load_state(out), IDENTITY.model_copy(update={"mode": now}))
        assert "\n" not in str(err.value)
        assert f"holds a `gra-local {was}` run, which `gra-local {now}` cannot continue" in str(err.value)
    old = tmp_path / "old"
    write_run_json(old, {"schema_version": 2, "identity": IDENTITY.model_dump(mode="json")})  # no mode
    resume.check_identity(old, resume.load_state(old), IDENTITY.model_copy(update={"mode": "review"}))


def test_a_models_file_key_added_later_takes_its_default(tmp_path: Path) -> None:
    """A run made before n_parallel existed resumes when it is left at "auto"."""
    write_run_json(tmp_path, {"schema_version": 2, "identity": IDENTITY.model_dump(mode="json")})
    state = resume.load_state(tmp_path)
    auto = IDENTITY.model_copy(update={"models": {"gen": {"sha256": "b" * 64, "n_parallel": "auto"}}})
    resume.check_identity(tmp_path, state, auto)  # no refusal
    pinned = IDENTITY.model_copy(update={"models": {"gen": {"sha256": "b" * 64, "n_parallel": 4}}})
    with pytest.raises(OutputError, match=r"models\.gen\.n_parallel: 'auto' → 4"):
        resume.check_identity(tmp_path, state, pinned)


def test_an_endpoint_model_pointed_elsewhere_is_refused_naming_the_difference(tmp_path: Path) -> None:
    """The identity holds what the servers said at start: another model id, server or URL
    refuses the resume in one line; where the key comes from or max_in_flight do not."""
    from gra_local.core.config import ModelSpec
    from gra_local.core.records import ModelRef
    from gra_local.core.rundir.report import model_identity

    spec = ModelSpec(name="judge", endpoint="http://gpu-box:8080/v1", api_key_env="KEY")
    ref = ModelRef(name="judge", endpoint="http://gpu-box:8080/v1", server="llama.cpp",
                   server_version="b5000", served_model="qwen2.5-7b")

    def identity(spec: ModelSpec, ref: ModelRef) -> RunIdentity:
        return IDENTITY.model_copy(update={"models": {"judge": model_identity(spec, ref)}})

    write_run_json(tmp_path, {"schema_version": 2, "identity": identity(spec, ref).model_dump(mode="json")})
    state = resume.load_state(tmp_path)
    same = spec.model_copy(update={"api_key_env": "OTHER_KEY", "max_in_flight": 16})
    resume.check_identity(tmp_path, state, identity(same, ref))  # no refusal
    other = ref.model_copy(update={"served_model": "llama-3.1-8b"})
    with pytest.raises(OutputError) as err:
        resume.check_identity(tmp_path, state, identity(spec, other))
    assert "\n" not in str(err.value)
    assert "(models.judge.served.model: 'qwen2.5-7b' → 'llama-3.1-8b')" in str(err.value)
    moved = spec.model_copy(update={"endpoint": "http://other-box:8080/v1"})
    with pytest.raises(OutputError, match=r"models\.judge\.endpoint: 'http://gpu-box:8080/v1' → "
                                          r"'http://other-box:8080/v1'"):
        resume.check_identity(tmp_path, state, identity(moved, ref.model_copy(
            update={"endpoint": "http://other-box:8080/v1"})))


def test_a_run_option_added_later_is_not_compared(tmp_path: Path) -> None:
    """A run made before `relevance` existed resumes, whatever this run sets it to; an
    option both know is still compared."""
    write_run_json(tmp_path, {"schema_version": 2, "identity": IDENTITY.model_dump(mode="json")})
    state = resume.load_state(tmp_path)
    for value in (True, False):
        now = IDENTITY.model_copy(update={"options": {**IDENTITY.options, "relevance": value}})
        resume.check_identity(tmp_path, state, now)  # no refusal
    changed = IDENTITY.model_copy(update={"options": {**IDENTITY.options, "relevance": True, "panel": 5}})
    with pytest.raises(OutputError, match=r"options\.panel: 3 → 5"):
        resume.check_identity(tmp_path, state, changed)

"""models.toml validation (errors name file, model and key) and RunOptions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gra_local.core.config import (
    DEFAULT_MODEL_PATH,
    DEFAULT_SAMPLING,
    ModelSpec,
    Role,
    load_registry,
)
from gra_local.core.errors import ConfigError
from gra_local.core.options import RunOptions, option_field, option_fields


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message  # every message names the file
    return message


# --- valid files ---------------------------------------------------------------------


def test_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "smol"
path = "/models/smol.gguf"
sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
chat_format = "chatml"
n_ctx = 2048
n_gpu_layers = 0
n_parallel = 4
n_threads = 4
roles = ["generator", "reviewer"]

[models.sampling.generator]
temperature = 0.7
max_tokens = 256

[[models]]
name = "qwen2.5-1.5b:q4"
path = "/models/qwen.gguf"
""")
    reg = load_registry(path)
    assert [m.name for m in reg.models] == ["smol", "qwen2.5-1.5b:q4"]
    smol, qwen = reg.models
    assert smol.path == "/models/smol.gguf"
    assert (smol.n_ctx, smol.n_gpu_layers, smol.n_threads, smol.chat_format) == (2048, 0, 4, "chatml")
    assert smol.roles == [Role.GENERATOR, Role.REVIEWER]
    # defaults
    assert smol.n_parallel == 4
    assert qwen.n_gpu_layers == "auto" and qwen.n_ctx is None and qwen.chat_format is None
    assert qwen.n_parallel == "auto"
    assert set(qwen.roles) == set(Role)
    assert [m.name for m in reg.with_role(Role.ADJUDICATOR)] == ["qwen2.5-1.5b:q4"]
    assert reg.get("smol") is smol
    with pytest.raises(KeyError):
        reg.get("nope")


def test_empty_file_has_no_models(tmp_path: Path) -> None:
    assert load_registry(write(tmp_path / "models.toml", "# nothing yet\n")).models == []


def test_per_role_sampling_override(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "smol"
path = "smol.gguf"
[models.sampling.reviewer]
temperature = 0.0
top_p = 0.5
""")
    spec = load_registry(path).models[0]
    rev = spec.sampling_for(Role.REVIEWER)
    assert (rev.temperature, rev.top_p) == (0.0, 0.5)
    assert rev.max_tokens == 160  # unset keys of an override keep the role's default
    # roles without an override keep the role defaults
    assert spec.sampling_for(Role.GENERATOR) == DEFAULT_SAMPLING[Role.GENERATOR]
    assert DEFAULT_SAMPLING[Role.GENERATOR].temperature == pytest.approx(0.8)
    assert DEFAULT_SAMPLING[Role.REVIEWER].temperature == pytest.approx(0.2)


def test_a_partial_sampling_table_keeps_the_role_defaults(tmp_path: Path) -> None:
    """Setting only the generator's max_tokens leaves its temperature at 0.8, top_p at 0.95
    and repeat_penalty at 1.1 (it used to fall back to Sampling's 0.2/0.9/1.0)."""
    path = write(tmp_path / "models.toml", """
[[models]]
name = "smol"
path = "smol.gguf"
[models.sampling.generator]
max_tokens = 300
""")
    gen = load_registry(path).models[0].sampling_for(Role.GENERATOR)
    assert gen == DEFAULT_SAMPLING[Role.GENERATOR].model_copy(update={"max_tokens": 300})
    assert (gen.temperature, gen.top_p, gen.repeat_penalty) == (0.8, 0.95, 1.1)


def test_relative_path_resolves_against_the_file_folder(tmp_path: Path, monkeypatch) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    path = write(conf / "models.toml", """
[[models]]
name = "a"
path = "weights/a.gguf"
[[models]]
name = "b"
path = "../b.gguf"
""")
    a, b = load_registry(path).models
    assert Path(a.path) == (conf / "weights" / "a.gguf").resolve()
    assert Path(b.path) == (tmp_path / "b.gguf").resolve()


def test_home_path_is_expanded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path / "models.toml", '[[models]]\nname = "a"\npath = "~/a.gguf"\n')
    assert load_registry(path).models[0].path == str(tmp_path / "a.gguf")


def test_default_path_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", '[[models]]\nname = "smollm2-135m"\npath = "default"\n')
    spec = load_registry(path).models[0]
    assert spec.path == DEFAULT_MODEL_PATH == "default"
    assert spec.is_default


# --- errors name file, model and key -----------------------------------------------------


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "smol"
path = "smol.gguf"
n_ctxx = 2048
""")
    msg = config_error(path)
    assert "models.toml" in msg
    assert "'smol'" in msg
    assert "n_ctxx" in msg
    assert "unknown key" in msg


def test_unknown_key_in_sampling(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "smol"
path = "smol.gguf"
[models.sampling.generator]
temprature = 0.5
""")
    msg = config_error(path)
    assert "'smol'" in msg and "temprature" in msg and "unknown key" in msg


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path / "models.toml", 'modles = []\n'))
    assert "modles" in msg and "unknown key" in msg


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "first"
path = "a.gguf"

[[models]]
name = "smol"
path = "smol.gguf"
n_ctx = "big"
""")
    msg = config_error(path)
    assert "'smol'" in msg and "models[1]" in msg and "n_ctx" in msg
    assert "'first'" not in msg


@pytest.mark.parametrize("line, key", [
    ('n_gpu_layers = "many"', "n_gpu_layers"),
    ("n_gpu_layers = true", "n_gpu_layers"),  # not read as 1
    ('n_ctx = "4096"', "n_ctx"),  # not read as a number
    ("n_ctx = 4096.0", "n_ctx"),
    ('n_threads = "2"', "n_threads"),
    ("n_threads = true", "n_threads"),
    ('roles = ["judge"]', "roles"),
    ("roles = []", "roles"),
    ('sha256 = "abc"', "sha256"),
    ("n_ctx = 16", "n_ctx"),
])
def test_invalid_values(tmp_path: Path, line: str, key: str) -> None:
    path = write(tmp_path / "models.toml", f'[[models]]\nname = "smol"\npath = "x.gguf"\n{line}\n')
    msg = config_error(path)
    assert "'smol'" in msg and key in msg


@pytest.mark.parametrize("value", ['"4"', "0", "-1", "65", "4.0", "true", '"many"', '"Auto"'])
def test_n_parallel_is_strict(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "models.toml", f'[[models]]\nname = "smol"\npath = "x.gguf"\nn_parallel = {value}\n')
    msg = config_error(path)
    assert "model 'smol' (models[0]) key 'n_parallel':" in msg, msg
    assert 'expected "auto" or a whole number from 1 to 64' in msg
    assert msg.count("key 'n_parallel") == 1  # one error, not one per member of the union


@pytest.mark.parametrize("value, expected", [("1", 1), ("64", 64), ('"auto"', "auto")])
def test_n_parallel_accepts_auto_and_1_to_64(tmp_path: Path, value: str, expected: object) -> None:
    path = write(tmp_path / "models.toml", f'[[models]]\nname = "smol"\npath = "x.gguf"\nn_parallel = {value}\n')
    assert load_registry(path).models[0].n_parallel == expected


def test_repo_models_toml_loads_and_documents_every_key() -> None:
    path = Path(__file__).resolve().parents[2] / "models.toml"
    text = path.read_text(encoding="utf-8")
    assert load_registry(path).models[0].n_parallel == "auto"
    for key in ModelSpec.model_fields:
        assert f"\n# {key}" in text, key


def test_missing_required_key(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path / "models.toml", '[[models]]\nname = "smol"\n'))
    assert "'smol'" in msg and "path" in msg


def test_model_without_name_is_named_by_index(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path / "models.toml",
                             '[[models]]\nname = "a"\npath = "a"\n[[models]]\npath = "b"\n'))
    assert "models[1]" in msg and "name" in msg


def test_bad_model_name(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path / "models.toml", '[[models]]\nname = "has space"\npath = "a"\n'))
    assert "name" in msg


def test_duplicate_model_name(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", """
[[models]]
name = "smol"
path = "a.gguf"
[[models]]
name = "smol"
path = "b.gguf"
""")
    msg = config_error(path)
    assert "'smol'" in msg and "twice" in msg


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "models.toml", '[[models]]\nname = "smol"\npath = = "x"\n')
    msg = config_error(path)
    assert "invalid TOML" in msg and "line 3" in msg


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_bytes(b'[[models]]\nname = "sm\xf6l"\npath = "x"\n')
    assert "UTF-8" in config_error(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in config_error(tmp_path / "nope.toml")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "models.toml").mkdir()
    assert "cannot read" in config_error(tmp_path / "models.toml")


def test_many_errors_are_summed_up(tmp_path: Path) -> None:
    text = "".join(f'[[models]]\nname = "m{i}"\npath = "x"\nbogus{i} = 1\n' for i in range(8))
    msg = config_error(write(tmp_path / "models.toml", text))
    assert "and 3 more" in msg


# --- RunOptions ------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [0, -1, -3])
def test_run_options_reject_non_positive_samples(samples: int) -> None:
    with pytest.raises(ValidationError):
        RunOptions(samples=samples)


@pytest.mark.parametrize("field, value", [
    ("max_attempts", 0), ("rounds", 0), ("panel", 0), ("batch", 0),
    ("tau", 11.0), ("tau", -1.0), ("delta", -0.5), ("seed", -1), ("seed_pool", 0),
])
def test_run_options_reject_out_of_range(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        RunOptions(samples=1, **{field: value})


def test_run_options_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        RunOptions(samples=1, sample=2)


def test_attempt_cap_defaults_to_four_times_samples() -> None:
    assert RunOptions(samples=5).attempt_cap == 20
    assert RunOptions(samples=5, max_attempts=7).attempt_cap == 7


def test_identity_excludes_what_may_change_on_resume() -> None:
    base = RunOptions(samples=1)
    ident = base.identity()
    for key in ("samples", "max_attempts", "batch", "rounds"):
        assert key not in ident
    assert {"panel", "tau", "delta", "seed"} <= set(ident)
    changed = RunOptions(samples=50, max_attempts=999, batch=7, rounds=3)
    assert changed.identity() == ident
    assert RunOptions(samples=1, tau=7).identity() != ident
    assert RunOptions(samples=1, panel=2).identity() != ident
    assert RunOptions(samples=1, seed=1).identity() != ident


def test_every_run_option_has_a_docstring_and_a_surface() -> None:
    fields = option_fields()
    assert [f.name for f in fields] == list(RunOptions.model_fields)
    for f in fields:
        assert f.doc and f.doc.endswith("."), f.name
        assert f.surface.label and len(f.surface.label) <= 15, f.name  # the form's label column
        assert f.kind in (int, float, bool, str), f.name


def test_option_fields_read_types_defaults_and_limits_from_run_options() -> None:
    samples = option_field("samples")
    assert samples.required and samples.default == 10 and samples.minimum == 1
    assert option_field("tau").kind is float and option_field("tau").default == 8.0
    assert option_field("calibration").choices == ("flag", "weight", "drop")
    dedup = option_field("dedup_threshold")
    assert dedup.nullable and dedup.none_is_off and dedup.show(None) == "off"
    batch = option_field("batch")
    assert batch.nullable and not batch.none_is_off and batch.show(None) == ""
    assert option_field("minhash").kind is bool and option_field("minhash").surface.off == "--no-minhash"
    for f in option_fields():  # the default a surface starts from is RunOptions' own
        if not f.required:
            assert f.default == RunOptions.model_fields[f.name].default, f.name


def test_decide_defaults_are_run_options_defaults() -> None:
    import inspect

    from gra_local.core.quality.decision import adjudicator_keeps
    from gra_local.core.quality.decision import score_rule as decide

    params = inspect.signature(decide).parameters
    assert (params["tau"].default, params["delta"].default) == (8.0, 1.5)
    assert params["tau"].default == RunOptions.model_fields["tau"].default
    assert inspect.signature(adjudicator_keeps).parameters["tau"].default == params["tau"].default

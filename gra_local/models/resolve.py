"""From a models.toml entry to a checked file on disk and its provenance, before any load."""

from __future__ import annotations

from pathlib import Path

from gra_local.core import paths
from gra_local.core.config import ModelSpec
from gra_local.core.errors import ModelError
from gra_local.core.records import ModelRef
from gra_local.models import embedded as default_model
from gra_local.models.fit import check_context
from gra_local.models.gguf_info import GGUFInfo, read_gguf_info, sha256_file


def model_path(spec: ModelSpec, data_dir: Path | None = None) -> Path:
    """The GGUF file of a model; ModelError for an endpoint model, which has none (the
    callers that reach GGUF code leave endpoint models out first)."""
    if spec.path is None:
        raise ModelError(f"model {spec.name!r} is served by {', '.join(spec.endpoints)}: it has "
                         "no GGUF file here (`gra-local doctor` shows its server)")
    if spec.is_default:
        path = default_model.default_model_path(data_dir or paths.data_dir())
        if not path.is_file():
            raise ModelError(
                f"model {spec.name!r} uses the embedded default model, which is not fetched yet: "
                f"run `gra-local models pull-default`. {default_model.how_to_use_local()}"
            )
        return path
    return Path(spec.path)


def check_model_file(spec: ModelSpec, data_dir: Path | None = None) -> tuple[Path, GGUFInfo]:
    """Raise ModelError unless the file is a readable, whole GGUF that can chat."""
    path = model_path(spec, data_dir)
    info = inspect_spec(spec, data_dir)
    known = known_architectures()
    if known and info.architecture not in known:
        raise ModelError(
            f"model {spec.name!r}: {path} is a {info.architecture!r} model, an architecture "
            f"llama.cpp does not know (of the {len(known)} the installed gguf package lists); "
            "this build cannot run it. Upgrade llama-cpp-python and gguf, or pick another GGUF"
        )
    check_context(spec, info)
    if info.chat_template is None and not spec.chat_format:
        raise ModelError(
            f"model {spec.name!r}: {path} has no chat template; set chat_format "
            f"(e.g. \"chatml\", \"llama-3\", \"mistral-instruct\") for it in models.toml"
        )
    if spec.sha256:
        actual = sha256_file(path, paths.cache_dir())
        if actual.lower() != spec.sha256.lower():
            raise ModelError(f"model {spec.name!r}: {path} has sha256 {actual}, models.toml says {spec.sha256}")
    return path, info


def known_architectures() -> set[str]:
    """Architecture names llama.cpp's GGUF constants know (the gguf package mirrors them)."""
    try:
        import gguf

        return set(gguf.MODEL_ARCH_NAMES.values())
    except Exception:  # an odd gguf version must not block loading: llama.cpp will say
        return set()


def inspect_spec(spec: ModelSpec, data_dir: Path | None = None) -> GGUFInfo:
    path = model_path(spec, data_dir)
    try:
        return read_gguf_info(path)
    except ModelError as exc:
        raise ModelError(f"model {spec.name!r}: {exc}") from None


def model_ref(spec: ModelSpec, data_dir: Path | None = None,
              info: GGUFInfo | None = None) -> ModelRef:
    """Name, sha256 and quantization for provenance (hash cached by path+size+mtime).
    Pass the header already read by check_model_file to avoid reading it again."""
    path = model_path(spec, data_dir)
    info = info or inspect_spec(spec, data_dir)
    if spec.is_default:
        digest = default_model.SHA256
    else:
        digest = sha256_file(path, paths.cache_dir())
    return ModelRef(name=spec.name, sha256=digest, quantization=info.file_type)

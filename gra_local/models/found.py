"""What discovery finds and the walk that finds it: records, names, the folder walker
and grouping of split GGUFs. `discover.py` adds the stores and de-duplication."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gra_local.models.gguf_info import GGUFInfo

SOURCES = ("huggingface", "ollama", "lmstudio", "folder")  # also the priority among duplicates
OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
LINUX_SERVICE_OLLAMA = Path("/usr/share/ollama/.ollama/models")  # `ollama` systemd service
NAME_MAX = 80  # ModelSpec.name max_length
NOT_LANGUAGE_MODELS = {"clip": "a vision projector (mmproj)"}

_SPLIT = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9._:+-]+")
SHA256_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


@dataclass
class Found:
    """One model found on disk (a split model is one Found for all its parts)."""

    path: Path
    """Absolute path to register (first part of a split model). Symlinks are kept, so a
    Hugging Face model shows its snapshot path; ``real_path`` is the resolved file."""
    source: str
    """Where it was found: "folder", "huggingface", "ollama" or "lmstudio"."""
    name: str
    """Suggested registry name, valid for ModelSpec.name (not necessarily unique)."""
    parts: list[Path] = field(default_factory=list)
    """Every file of the model in order; just ``[path]`` unless split."""
    size_bytes: int = 0
    info: GGUFInfo | None = None
    problem: str | None = None
    """Why the model cannot be used as it is (found-but-broken files are reported)."""
    duplicates: list[Found] = field(default_factory=list)
    """The same model reached another way (other path, tag or identical copy)."""
    real_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(os.path.abspath(self.path))
        self.parts = [Path(os.path.abspath(p)) for p in self.parts] or [self.path]
        self.real_path = Path(os.path.realpath(self.path))

    @property
    def usable(self) -> bool:
        return self.info is not None and self.problem is None


@dataclass
class DiscoveryResult:
    found: list[Found] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scanned: list[tuple[str, Path]] = field(default_factory=list)
    """The (source, folder) locations actually scanned."""


def suggest_name(text: str) -> str:
    """A ModelSpec-valid name from any text: ``/`` becomes ``--``, odd characters ``-``."""
    text = re.sub(r"[/\\]+", "--", text)
    text = _BAD_NAME_CHARS.sub("-", text).lstrip("._:+-")
    return text[:NAME_MAX].rstrip("-") or "model"


def fitting_name(*candidates: str) -> str:
    """The first candidate whose name fits NAME_MAX untruncated, else the last one clipped."""
    for text in candidates:
        name = suggest_name(text)
        if len(name) < NAME_MAX:
            return name
    return suggest_name(candidates[-1])


def why(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def default_locations() -> list[tuple[str, Path]]:
    """Where Hugging Face, Ollama and LM Studio keep models on this platform (existing or
    not), honouring HF_HUB_CACHE, HF_HOME and OLLAMA_MODELS."""
    env = os.environ.get
    try:
        home: Path | None = Path.home()
    except RuntimeError:  # neither HOME nor USERPROFILE
        home = None
    xdg = env("XDG_CACHE_HOME")
    hf_home = env("HF_HOME") or (xdg and Path(xdg) / "huggingface") or (home and home / ".cache" / "huggingface")
    locs: list[tuple[str, str | Path | None]] = [
        ("huggingface", env("HF_HUB_CACHE") or env("HUGGINGFACE_HUB_CACHE") or (hf_home and Path(hf_home) / "hub")),
        ("ollama", env("OLLAMA_MODELS") or (home and home / ".ollama" / "models")),
    ]
    if sys.platform.startswith("linux"):
        locs.append(("ollama", LINUX_SERVICE_OLLAMA))
    if home is not None:
        locs += [("lmstudio", home / ".lmstudio" / "models"),
                 ("lmstudio", home / ".cache" / "lm-studio" / "models")]
    out: list[tuple[str, Path]] = []
    for source, where in locs:
        if where and (source, Path(where).expanduser()) not in out:
            out.append((source, Path(where).expanduser()))
    return out


def dir_state(path: Path) -> str | None:
    """None for a readable folder, "" when absent (or not a folder), else why not usable."""
    try:
        if not path.is_dir():
            return ""
        os.scandir(path).close()
    except OSError as exc:
        return why(exc)
    return None


def is_gguf_name(name: str) -> bool:
    return name.lower().endswith(".gguf")


def walk(root: Path, want: Callable[[str], bool], warnings: list[str]) -> Iterator[Path]:
    """Files under ``root`` at any depth whose name passes ``want``, following symlinks
    but never into a folder already visited (so symlink loops end)."""
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(root, ())]
    visited: set[tuple[int, int]] = set()
    while stack:
        folder, ancestors = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                warnings.append(f"{folder}: symlink loop (leads back to a folder above it), not followed")
                continue
            if key in visited:
                continue
            visited.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            warnings.append(f"{folder}: cannot read folder ({why(exc)}), skipped")
            continue
        subdirs: list[Path] = []
        for entry in entries:
            try:
                if entry.is_dir():
                    subdirs.append(Path(entry.path))
                elif want(entry.name):
                    if entry.is_file():
                        yield Path(entry.path)
                    elif entry.is_symlink():
                        warnings.append(f"{entry.path}: broken symlink, skipped")
            except OSError as exc:
                warnings.append(f"{entry.path}: cannot read ({why(exc)}), skipped")
        stack.extend((d, (*ancestors, key)) for d in reversed(subdirs))


def group_parts(files: list[Path], source: str, namer: Callable[[Path, str], str]) -> list[Found]:
    """One Found per file, except the parts of a split model (same folder, same base
    name, same part count), which become one Found.  ``namer(path, stem)`` names it."""
    found: list[Found] = []
    sets: dict[tuple[Path, str, int], dict[int, Path]] = {}
    for path in files:
        m = _SPLIT.match(path.name)
        if m and 1 <= int(m["index"]) <= int(m["total"]):
            sets.setdefault((path.parent, m["base"], int(m["total"])), {})[int(m["index"])] = path
        else:
            stem = path.name[: -len(".gguf")] if is_gguf_name(path.name) else path.name
            found.append(Found(path=path, source=source, name=namer(path, stem)))
    for (_, base, total), by_index in sets.items():
        parts = [by_index[i] for i in sorted(by_index)]
        f = Found(path=parts[0], source=source, name=namer(parts[0], base), parts=parts)
        missing = [str(i) for i in range(1, total + 1) if i not in by_index]
        if missing:
            f.problem = f"split model is incomplete: part {', '.join(missing)} of {total} missing"
        found.append(f)
    return found

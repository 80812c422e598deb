"""Find the GGUF models already on this machine, reading only headers and never writing.

Looks in folders the user names (any depth), the Hugging Face hub cache (snapshot
symlinks into ``blobs/``), Ollama's store (manifests name extension-less blobs) and LM
Studio's models folder, at each tool's default location or where its own environment
variable puts it.  One model reached twice (symlinks, two folders, two Ollama tags) is
reported once; with ``hash_dedupe`` identical copies are too.  Split GGUFs
(``*-00001-of-00003.gguf``) are one model.  Unreadable folders, symlink loops and broken
files become warnings or problems: one bad folder never stops the scan.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gra_local.core import paths
from gra_local.core.errors import ModelError
from gra_local.models.gguf_info import GGUFInfo, read_gguf_info, sha256_file

SOURCES = ("huggingface", "ollama", "lmstudio", "folder")  # also the priority among duplicates
OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
LINUX_SERVICE_OLLAMA = Path("/usr/share/ollama/.ollama/models")  # `ollama` systemd service
NAME_MAX = 80  # ModelSpec.name max_length
NOT_LANGUAGE_MODELS = {"clip": "a vision projector (mmproj)"}

_SPLIT = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9._:+-]+")
_SHA256_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


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


def _fitting_name(*candidates: str) -> str:
    """The first candidate whose name fits NAME_MAX untruncated, else the last one clipped."""
    for text in candidates:
        name = suggest_name(text)
        if len(name) < NAME_MAX:
            return name
    return suggest_name(candidates[-1])


def _why(exc: OSError) -> str:
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


def _dir_state(path: Path) -> str | None:
    """None for a readable folder, "" when absent (or not a folder), else why not usable."""
    try:
        if not path.is_dir():
            return ""
        os.scandir(path).close()
    except OSError as exc:
        return _why(exc)
    return None


def _is_gguf_name(name: str) -> bool:
    return name.lower().endswith(".gguf")


def _walk(root: Path, want: Callable[[str], bool], warnings: list[str]) -> Iterator[Path]:
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
            warnings.append(f"{folder}: cannot read folder ({_why(exc)}), skipped")
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
                warnings.append(f"{entry.path}: cannot read ({_why(exc)}), skipped")
        stack.extend((d, (*ancestors, key)) for d in reversed(subdirs))


def _group(files: list[Path], source: str, namer: Callable[[Path, str], str]) -> list[Found]:
    """One Found per file, except the parts of a split model (same folder, same base
    name, same part count), which become one Found.  ``namer(path, stem)`` names it."""
    found: list[Found] = []
    sets: dict[tuple[Path, str, int], dict[int, Path]] = {}
    for path in files:
        m = _SPLIT.match(path.name)
        if m and 1 <= int(m["index"]) <= int(m["total"]):
            sets.setdefault((path.parent, m["base"], int(m["total"])), {})[int(m["index"])] = path
        else:
            stem = path.name[: -len(".gguf")] if _is_gguf_name(path.name) else path.name
            found.append(Found(path=path, source=source, name=namer(path, stem)))
    for (_, base, total), by_index in sets.items():
        parts = [by_index[i] for i in sorted(by_index)]
        f = Found(path=parts[0], source=source, name=namer(parts[0], base), parts=parts)
        missing = [str(i) for i in range(1, total + 1) if i not in by_index]
        if missing:
            f.problem = f"split model is incomplete: part {', '.join(missing)} of {total} missing"
        found.append(f)
    return found


def _scan_folder(root: Path, source: str, warnings: list[str]) -> list[Found]:
    files = list(_walk(root, _is_gguf_name, warnings))
    return _group(files, source, lambda _path, stem: suggest_name(stem))


def _subdirs(folder: Path, warnings: list[str]) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if e.is_dir())
    except OSError as exc:
        warnings.append(f"{folder}: cannot read folder ({_why(exc)}), skipped")
        return []


def _scan_hf(where: Path, source: str, warnings: list[str]) -> list[Found]:
    """A hub cache (``models--ORG--REPO`` folders), or one such repo folder."""
    if where.name.startswith("models--"):
        return _scan_hf_repo(where, warnings)
    return [f for repo in _subdirs(where, warnings) if repo.name.startswith("models--")
            for f in _scan_hf_repo(repo, warnings)]


def _scan_hf_repo(repo_dir: Path, warnings: list[str]) -> list[Found]:
    repo_id = repo_dir.name.removeprefix("models--").replace("--", "/")
    snapshots = repo_dir / "snapshots"
    if _dir_state(snapshots) == "":
        return []
    try:
        main_rev = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        main_rev = ""

    def namer(path: Path, stem: str) -> str:
        inner = "/".join(path.relative_to(snapshots).parts[1:-1] + (stem,))  # under <rev>/
        return _fitting_name(f"{repo_id}/{inner}", f"{repo_id.rsplit('/', 1)[-1]}/{inner}", inner)

    found = _group(list(_walk(snapshots, _is_gguf_name, warnings)), "huggingface", namer)

    # revisions share blobs: keep one path per blob, the main revision's when it has it
    def rank(f: Found) -> tuple[bool, str]:
        return f.path.relative_to(snapshots).parts[0] != main_rev, str(f.path)

    kept: dict[Path, Found] = {}
    for f in sorted(found, key=rank):
        kept.setdefault(f.real_path, f)
    return list(kept.values())


def ollama_name(host: str, namespace: str, model: str, tag: str) -> str:
    """The name as `ollama list` shows it: qwen2.5:1.5b, user/model:tag, hf.co/org/repo:tag."""
    if host != OLLAMA_REGISTRY:
        return f"{host}/{namespace}/{model}:{tag}"
    return f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"


def _ollama_model_digest(manifest: object) -> str | None:
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if not isinstance(layers, list):
        raise ValueError("no layers list")
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
            digest = layer.get("digest")
            if not isinstance(digest, str) or not _SHA256_DIGEST.match(digest):
                raise ValueError(f"bad model layer digest {digest!r}")
            return digest[len("sha256:"):]
    return None  # no weights here (e.g. a cloud model): nothing to find


def _scan_ollama(store: Path, source: str, warnings: list[str]) -> list[Found]:
    """Read-only: manifests/<host>/<namespace>/<model>/<tag> -> blobs/sha256-<hex>."""
    manifests, blobs = store / "manifests", store / "blobs"
    found: list[Found] = []
    if _dir_state(manifests) == "":  # a fresh install: nothing pulled yet
        return found
    for manifest in _walk(manifests, lambda _name: True, warnings):
        rel = manifest.relative_to(manifests).parts
        if len(rel) != 4:
            continue
        name = ollama_name(*rel)
        try:
            digest = _ollama_model_digest(json.loads(manifest.read_text(encoding="utf-8")))
        except OSError as exc:
            warnings.append(f"{manifest}: cannot read Ollama manifest ({_why(exc)}), skipped")
            continue
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
            warnings.append(f"{manifest}: not a valid Ollama manifest ({exc}), skipped")
            continue
        if digest is None:
            continue
        blob = next((b for b in (blobs / f"sha256-{digest}", blobs / f"sha256:{digest}")
                     if b.is_file()), None)
        if blob is None:
            warnings.append(f"Ollama model {name}: its weights blob sha256-{digest[:12]}… is "
                            f"missing from {blobs} (interrupted pull?), skipped")
            continue
        found.append(Found(path=blob, source="ollama", name=suggest_name(name)))
    return found


_SCANNERS: dict[str, Callable[[Path, str, list[str]], list[Found]]] = {
    "huggingface": _scan_hf, "ollama": _scan_ollama, "lmstudio": _scan_folder, "folder": _scan_folder,
}


def _classify(folder: Path) -> str:
    """A folder the user named may be an Ollama store or a hub cache: read it as such."""
    if (folder / "manifests").is_dir() and (folder / "blobs").is_dir():
        return "ollama"
    if folder.name.startswith("models--") and (folder / "snapshots").is_dir():
        return "huggingface"
    try:
        with os.scandir(folder) as it:
            if any(e.name.startswith("models--") and e.is_dir() for e in it):
                return "huggingface"
    except OSError:
        pass
    return "folder"


def _locations(dirs: list[Path], include_defaults: bool, result: DiscoveryResult) -> list[Found]:
    """Resolve what to scan; a file named directly is taken as it is."""
    singles: list[Path] = []
    todo: list[tuple[str, Path]] = []
    for d in dirs:
        d = Path(os.path.abspath(Path(d).expanduser()))
        if d.is_file():  # a model file named directly (an Ollama blob has no extension)
            singles.append(d)
        elif (state := _dir_state(d)) is None:
            todo.append((_classify(d), d))
        else:
            result.warnings.append(f"{d}: {state or 'no such folder'}, skipped")
    if include_defaults:
        for source, where in default_locations():
            where = Path(os.path.abspath(where))
            state = _dir_state(where)
            if state is None:
                todo.append((source, where))
            elif state:  # exists but unreadable (say, another user's Ollama service store)
                result.warnings.append(f"{where}: cannot read {source} models ({state}), skipped")
    found = _group(singles, "folder", lambda _path, stem: suggest_name(stem))
    for source, where in todo:
        result.scanned.append((source, where))
        try:
            found += _SCANNERS[source](where, source, result.warnings)
        except OSError as exc:  # safety net: the walkers already catch per folder
            result.warnings.append(f"{where}: scan stopped early ({_why(exc)})")
    return found


def _measure(f: Found) -> None:
    try:
        f.size_bytes = sum(os.stat(p).st_size for p in f.parts)
    except OSError as exc:
        f.problem = f.problem or f"cannot read file ({_why(exc)})"


def _read_header(f: Found) -> None:
    try:
        f.info = read_gguf_info(f.path)
    except ModelError as exc:
        f.problem = f.problem or str(exc).removeprefix(f"{f.path}: ")
        return
    n_parts = f.info.split_count
    if n_parts is not None and n_parts > 1 and n_parts != len(f.parts) and f.problem is None:
        f.problem = f"split model is incomplete: the header says {n_parts} parts, found {len(f.parts)}"
    kind = NOT_LANGUAGE_MODELS.get(f.info.architecture)
    if kind and f.problem is None:
        f.problem = f"{kind}, not a language model (architecture {f.info.architecture})"


def _dedupe_by_path(found: list[Found]) -> list[Found]:
    """One Found per real file: the richest source first, then the file itself over a link."""
    kept: dict[Path, Found] = {}
    order = sorted(found, key=lambda f: (SOURCES.index(f.source), f.path != f.real_path,
                                         f.name, str(f.path)))
    for f in order:
        first = kept.setdefault(f.real_path, f)
        if first is not f and (f.path, f.name) not in {
                (d.path, d.name) for d in (first, *first.duplicates)}:
            first.duplicates.append(f)  # one path reached twice is not worth a mention
    return list(kept.values())


def _dedupe_by_hash(found: list[Found], warnings: list[str]) -> list[Found]:
    """Identical copies: hash only files whose size matches another's (hashes are cached)."""
    by_size: dict[int, list[Found]] = {}
    for f in found:
        if f.size_bytes:
            by_size.setdefault(f.size_bytes, []).append(f)
    dropped: set[int] = set()
    for group in by_size.values():
        seen: dict[str, Found] = {}
        for f in group if len(group) > 1 else ():
            try:
                digest = ":".join(sha256_file(p, paths.cache_dir()) for p in f.parts)
            except ModelError as exc:
                warnings.append(f"{exc}; not compared by hash")
                continue
            first = seen.setdefault(digest, f)
            if first is not f:
                first.duplicates.append(f)
                dropped.add(id(f))
    return [f for f in found if id(f) not in dropped]


def discover(dirs: list[Path] | None = None, include_defaults: bool = True,
             hash_dedupe: bool = False) -> DiscoveryResult:
    """Every GGUF model in ``dirs`` (and the tools' default stores), sorted by name."""
    result = DiscoveryResult()
    found = _dedupe_by_path(_locations(list(dirs or []), include_defaults, result))
    for f in found:
        _measure(f)
    if hash_dedupe:
        found = _dedupe_by_hash(found, result.warnings)
    for f in found:
        _read_header(f)
    result.found = sorted(found, key=lambda f: (f.name.lower(), f.name, str(f.path)))
    result.warnings = list(dict.fromkeys(result.warnings))
    return result

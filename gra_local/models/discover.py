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
from collections.abc import Callable
from pathlib import Path

from gra_local.core import paths
from gra_local.core.errors import ModelError
from gra_local.models.found import (
    NOT_LANGUAGE_MODELS,
    OLLAMA_MODEL_LAYER,
    OLLAMA_REGISTRY,
    SHA256_DIGEST,
    SOURCES,
    DiscoveryResult,
    Found,
    default_locations,
    dir_state,
    fitting_name,
    group_parts,
    is_gguf_name,
    suggest_name,
    walk,
    why,
)
from gra_local.models.gguf_info import read_gguf_info, sha256_file


def _scan_folder(root: Path, source: str, warnings: list[str]) -> list[Found]:
    files = list(walk(root, is_gguf_name, warnings))
    return group_parts(files, source, lambda _path, stem: suggest_name(stem))


def _subdirs(folder: Path, warnings: list[str]) -> list[Path]:
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if e.is_dir())
    except OSError as exc:
        warnings.append(f"{folder}: cannot read folder ({why(exc)}), skipped")
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
    if dir_state(snapshots) == "":
        return []
    try:
        main_rev = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        main_rev = ""

    def namer(path: Path, stem: str) -> str:
        inner = "/".join(path.relative_to(snapshots).parts[1:-1] + (stem,))  # under <rev>/
        return fitting_name(f"{repo_id}/{inner}", f"{repo_id.rsplit('/', 1)[-1]}/{inner}", inner)

    found = group_parts(list(walk(snapshots, is_gguf_name, warnings)), "huggingface", namer)

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
            if not isinstance(digest, str) or not SHA256_DIGEST.match(digest):
                raise ValueError(f"bad model layer digest {digest!r}")
            return digest[len("sha256:"):]
    return None  # no weights here (e.g. a cloud model): nothing to find


def _scan_ollama(store: Path, source: str, warnings: list[str]) -> list[Found]:
    """Read-only: manifests/<host>/<namespace>/<model>/<tag> -> blobs/sha256-<hex>."""
    manifests, blobs = store / "manifests", store / "blobs"
    found: list[Found] = []
    if dir_state(manifests) == "":  # a fresh install: nothing pulled yet
        return found
    for manifest in walk(manifests, lambda _name: True, warnings):
        rel = manifest.relative_to(manifests).parts
        if len(rel) != 4:
            continue
        name = ollama_name(*rel)
        try:
            digest = _ollama_model_digest(json.loads(manifest.read_text(encoding="utf-8")))
        except OSError as exc:
            warnings.append(f"{manifest}: cannot read Ollama manifest ({why(exc)}), skipped")
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
        elif (state := dir_state(d)) is None:
            todo.append((_classify(d), d))
        else:
            result.warnings.append(f"{d}: {state or 'no such folder'}, skipped")
    if include_defaults:
        for source, where in default_locations():
            where = Path(os.path.abspath(where))
            state = dir_state(where)
            if state is None:
                todo.append((source, where))
            elif state:  # exists but unreadable (say, another user's Ollama service store)
                result.warnings.append(f"{where}: cannot read {source} models ({state}), skipped")
    found = group_parts(singles, "folder", lambda _path, stem: suggest_name(stem))
    for source, where in todo:
        result.scanned.append((source, where))
        try:
            found += _SCANNERS[source](where, source, result.warnings)
        except OSError as exc:  # safety net: the walkers already catch per folder
            result.warnings.append(f"{where}: scan stopped early ({why(exc)})")
    return found


def _measure(f: Found) -> None:
    try:
        f.size_bytes = sum(os.stat(p).st_size for p in f.parts)
    except OSError as exc:
        f.problem = f.problem or f"cannot read file ({why(exc)})"


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

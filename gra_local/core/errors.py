"""Errors as types. Every error a user can cause carries one readable message that
names the input (file, line, key, model); the CLI prints it without a traceback."""

from __future__ import annotations


class GraError(Exception):
    """Base of every error the CLI reports as a plain message (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SeedError(GraError):
    """A seed file cannot be used: missing, empty, malformed, not UTF-8, no usable record."""


class ConfigError(GraError):
    """models.toml or run options are invalid; the message names file and key."""


class ModelError(GraError):
    """A model file is missing, not GGUF, truncated, has no chat template, or failed to load."""


class BackendError(GraError):
    """A model worker crashed or answered with an error while running."""


class WorkerLost(BackendError):
    """A model's worker died (crash, OOM kill) or stopped answering within its deadline and
    was killed, or every server of an endpoint model was down through a call. A fault, never
    a verdict: the calls of that wave are asked again of a fresh worker (or session), and a
    model lost MAX_WORKER_LOSSES times stops the run (`ModelDown`)."""


class ModelDown(GraError):
    """A model the run needs was lost too often (its worker died or missed deadlines, or
    its servers stayed unreachable): the run stops as `interrupted`, since it cannot go on
    as configured without recording a fault as a verdict, and rerunning the same command
    resumes it. The message names the model (an endpoint credential-free)."""


class EndpointDown(ModelDown):
    """An endpoint model's servers stayed unreachable until the model was dropped (or were
    unreachable when it was first needed)."""


class OutputError(GraError):
    """The output directory cannot be used (not writable, locked, holds another run)."""


class DownloadError(GraError):
    """The embedded default model could not be fetched (offline, hash mismatch)."""


class EmbedderError(GraError):
    """The sentence-embedding model is missing, incomplete or corrupt; the message names the file."""


class DedupError(GraError):
    """The embedding cache cannot be used (made by another model, unreadable header)."""


def error_message(exc: BaseException) -> str:
    """The one line a user is shown for an error: a GraError's message; for an OSError
    that escaped the checks, the path it names and what the OS said."""
    if isinstance(exc, OSError):
        reason = (f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None and exc.strerror
                  else str(exc))
        return f"cannot use {exc.filename}: {reason}" if exc.filename else reason
    return str(exc)


def error_notes(exc: BaseException) -> list[str]:
    """Further errors met while the run was wrapping up after `exc` (run.json could not be
    written either, say): shown after it, never instead of it."""
    return [str(note) for note in getattr(exc, "__notes__", ())]

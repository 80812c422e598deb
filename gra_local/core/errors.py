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


class OutputError(GraError):
    """The output directory cannot be used (not writable, locked, holds another run)."""


class DownloadError(GraError):
    """The embedded default model could not be fetched (offline, hash mismatch)."""


class EmbedderError(GraError):
    """The sentence-embedding model is missing, incomplete or corrupt; the message names the file."""


class DedupError(GraError):
    """The embedding cache cannot be used (made by another model, unreadable header)."""

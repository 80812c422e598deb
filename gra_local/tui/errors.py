"""The errors the app expects from the work it starts, and shows as a notification: those
the CLI prints as one line (gra_local/cli.py catches the same two). A GraError names the
bad input (a models file, a GGUF, a server that does not answer, a worker that died:
EndpointDown, WorkerLost and the endpoint checks' Unreachable are GraErrors too); an
OSError is a disk or system error no check turned into one. Anything else is a bug: it is
not caught, so Textual reports it (the app exits with its traceback, and a test fails)."""

from __future__ import annotations

from gra_local.core.errors import GraError

EXPECTED_ERRORS: tuple[type[Exception], ...] = (GraError, OSError)

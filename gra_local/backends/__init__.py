"""Implementations of `gra_local.core.backend.Backend`."""

"""A model's file size and parameter count as short text, alike in the CLI and the app."""

from __future__ import annotations


def human_size(n: int) -> str:
    """Bytes in decimal units: 512 B, 141.8 KB, 98.2 MB, 4.9 GB, 1.2 TB."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("KB", "MB", "GB"):
        if round(value, 1) < 1000:  # 999.96 KB reads 1.0 MB, not 1000.0 KB
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_params(n: int) -> str:
    """A parameter count: 33K, 135M, 1.5B (999.7M reads 1.0B, not 1000M)."""
    if n >= 999.5e6:
        return f"{n / 1e9:.1f}B"
    if n >= 999.5e3:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e3:.0f}K" if n >= 999.5 else str(n)

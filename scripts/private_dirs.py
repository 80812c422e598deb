"""Private user directories for the benches (benchlib.private_user_dirs) and the test
session (tests/conftest.py): config, cache, data and state moved into a folder of their
own, the data dir a shadow of the user's, so the user's downloaded models are still found
and nothing is written into the user's own dirs.

Not part of the product (it changes this process's environment); the scripts and the tests
put this folder on sys.path to import it.
"""

from __future__ import annotations

import os
from pathlib import Path

from gra_local.core import paths

XDG_DIRS = ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
OWN_DIRS = ("GRA_LOCAL_CONFIG_DIR", "GRA_LOCAL_CACHE_DIR", "GRA_LOCAL_DATA_DIR")
"""The variables gra_local.core.paths reads to move its own dirs."""


def shadow_data_dir(real: Path, shadow: Path) -> Path:
    """`shadow` laid out like the data dir `real` (models/, embedders/, ...), each entry a
    symlink to the real one: the downloaded models are found, and anything written (a pull,
    a new file) lands in `shadow`, never in `real`."""
    shadow.mkdir(parents=True, exist_ok=True)
    if real.is_dir():
        for group in real.iterdir():
            if group.is_dir():
                (shadow / group.name).mkdir(exist_ok=True)
                for entry in group.iterdir():
                    link = shadow / group.name / entry.name
                    if not link.exists():
                        link.symlink_to(entry.resolve())
    return shadow


def use_private_dirs(root: Path) -> None:
    """Point this process's and its children's config, cache, data and state directories
    (the XDG ones and gra-local's own GRA_LOCAL_*_DIR) into `root`, the data dir as a shadow
    of the user's (models still found, nothing written there)."""
    real_data = paths.data_dir()  # the user's, before anything moves
    for var in XDG_DIRS:
        os.environ[var] = str(root / var.split("_")[1].lower())
    os.environ["GRA_LOCAL_CONFIG_DIR"] = str(root / "config" / paths.APP)
    os.environ["GRA_LOCAL_CACHE_DIR"] = str(root / "cache" / paths.APP)
    os.environ["GRA_LOCAL_DATA_DIR"] = str(shadow_data_dir(real_data, root / "data" / paths.APP))

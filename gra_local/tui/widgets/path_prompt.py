"""A modal asking for a file path: typed, or picked in a directory tree that shows only
folders and the file types asked for. Dismisses with the path, or None."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label


class FileTree(DirectoryTree):
    """Folders (hidden ones left out) and files whose name ends with one of `suffixes`."""

    def __init__(self, path: Path, suffixes: tuple[str, ...], **kwargs: object) -> None:
        self.suffixes = tuple(s.lower() for s in suffixes)
        super().__init__(path, **kwargs)  # type: ignore[arg-type]

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        keep = []
        for path in paths:
            if path.name.startswith("."):
                continue
            try:
                if path.is_dir() or path.name.lower().endswith(self.suffixes):
                    keep.append(path)
            except OSError:  # unreadable entry: leave it out rather than fail the tree
                continue
        return keep


def start_dir(value: str) -> Path:
    """Where the tree opens: the folder of the typed path if it exists, else home."""
    if value:
        path = Path(value).expanduser()
        for candidate in (path, path.parent):
            if candidate.is_dir():
                return candidate
    return Path.home()


class PathPrompt(ModalScreen[str | None]):
    DEFAULT_CSS = """
    PathPrompt { align: center middle; }
    PathPrompt > Vertical { width: 90; max-width: 100%; height: auto; max-height: 90%;
                            border: thick $accent; background: $surface; padding: 1 2; }
    PathPrompt Label.hint { color: $text-muted; }
    PathPrompt FileTree { height: 14; border: round $panel; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, placeholder: str = "", hint: str = "", value: str = "",
                 browse: tuple[str, ...] | None = None, root: Path | None = None) -> None:
        super().__init__()
        self.title_text, self.placeholder, self.hint, self.value = title, placeholder, hint, value
        self.browse = browse
        self.root = root

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="path")
            if self.browse:
                yield FileTree(self.root or start_dir(self.value), self.browse, id="tree")
            if self.hint:
                yield Label(self.hint, classes="hint", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    @on(DirectoryTree.FileSelected)
    def _picked(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def action_cancel(self) -> None:
        self.dismiss(None)

"""How the surfaces (the CLI's flags, the app's New run form, the settings file) show a
RunOptions field: plain data, so core needs neither argparse nor Textual."""

from __future__ import annotations

import ast
import inspect
import itertools
import sys
from dataclasses import dataclass
from functools import cache
from typing import Literal, cast, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Surface:
    """How the surfaces show one RunOptions field: its `run`/`review` flag, its row on the New
    run form, its key in the settings file. Plain data, so core needs neither argparse nor
    Textual; cli.py and the New run screen build their flags and inputs from it, which is
    what keeps a default or a help text from being written twice."""

    label: str
    """Its name on the New run form, and in the app's error messages."""
    metavar: str | None = None
    """The CLI's placeholder for its value; None: argparse's own (the flag in capitals)."""
    review: bool = False
    """`gra-local review` takes it too (review-only runs generate nothing, so the options of
    generation and rounds do not apply there)."""
    quality: bool = False
    """A dedup or calibration option: the CLI lists these after --restart and --quiet."""
    off: str | None = None
    """The CLI flag that turns the feature off: sets a threshold to None or a switch to False."""
    off_help: str = ""
    """Help of the `off` flag."""
    offer: int | None = None
    """The value the surfaces offer for a field RunOptions requires (the CLI's default, the
    form's first value): `samples` is required because review-only runs and scripts pass
    their own, while a person asking for a run is offered 10."""
    review_help: str | None = None
    """Help for `review` where the run's help does not fit."""
    hint: str = ""
    """Placeholder of the form's input while it is empty."""


@dataclass(frozen=True)
class OptionField:
    """One RunOptions field as the surfaces need it: type, default, limits, help and Surface."""

    name: str
    owner: type
    """The model the field is declared in (RunOptions)."""
    kind: type
    """int, float, bool or str (a choice)."""
    surface: Surface
    default: object
    """The value a surface starts from: the field's default, or `Surface.offer` for a required one."""
    required: bool
    nullable: bool
    """None is a valid value (off, or "use the adaptive default")."""
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    @property
    def doc(self) -> str:
        """The field's docstring on one line (read when first asked for: `attribute_docs`)."""
        return attribute_docs(self.owner).get(self.name, "")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def show(self, value: object) -> str:
        """How the New run form shows a value: None is "off" where None turns a feature
        off, blank where None is the default itself (max attempts, batch)."""
        if value is None:
            return "off" if self.none_is_off else ""
        return str(value)

    @property
    def none_is_off(self) -> bool:
        """None turns this field's feature off: typed as off/none/no on the form, written
        "off" in the settings file (TOML has no null)."""
        return self.nullable and self.surface.off is not None


@cache
def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each annotated attribute of `cls`, on one line, read from its
    module's source when first asked for (--help, the tests); {} where the source cannot be
    read. pydantic's `use_attribute_docstrings` reads them when the class is made, which
    cost ~20 ms of every start, the app's first frame included (scripts/bench_tui.py)."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[cls.__module__]))
    except (OSError, TypeError, KeyError):
        return {}
    body = next((n.body for n in ast.walk(tree)
                 if isinstance(n, ast.ClassDef) and n.name == cls.__name__), [])
    docs = {}
    for stmt, after in itertools.pairwise(body):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def option_field_of(name: str, info: FieldInfo, owner: type) -> OptionField:
    """The OptionField of field `name` of `owner` (RunOptions; its Surface is in its metadata)."""
    surface = next((m for m in info.metadata if isinstance(m, Surface)), None)
    if surface is None:
        raise TypeError(f"RunOptions.{name} has no Surface")
    annotation = info.annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    nullable = type(None) in get_args(annotation)
    choices: tuple[str, ...] = ()
    if get_origin(annotation) is Literal:
        kind: object = str
        choices = tuple(str(a) for a in get_args(annotation))
    else:
        kind = args[0] if nullable else annotation
    if kind not in (int, float, bool, str):
        raise TypeError(f"RunOptions.{name}: no surface shows a {annotation}")
    minimum = next((float(m.ge) for m in info.metadata  # type: ignore[arg-type]
                    if isinstance(m, annotated_types.Ge)), None)
    required = info.is_required()
    return OptionField(name=name, owner=owner, kind=cast(type, kind), surface=surface,
                       default=surface.offer if required else info.default, required=required,
                       nullable=nullable, choices=choices, minimum=minimum)

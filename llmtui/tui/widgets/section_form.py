"""A form for one recipe section, built from its pydantic model: every field, checked on the spot.

Each change is validated by the recipe loader (the whole recipe, so rules across fields apply too); a field
the loader rejects shows the loader's message under it and holds the wizard on this step until fixed.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Collapsible, Input, Label, Select, Static

from llmtui.config.loader import parse_toml_value
from llmtui.config.recipe import Recipe, Section
from llmtui.tui.widgets.text_entry import InTurnInput
from llmtui.tui.wizard_access import wizard_of


@dataclass
class FormField:
    key: str  # key path inside the section, e.g. "clean.fix_encoding"
    info: FieldInfo
    kind: str  # input | select | checkbox | csv | list
    choices: tuple[str, ...] = ()


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]] | None:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "checkbox", ()
    if origin is Literal:
        return "select", tuple(typing.get_args(annotation))
    if annotation in (int, float, str):
        return "input", ()
    if origin is list:
        (item,) = typing.get_args(annotation)
        if typing.get_origin(item) is Literal:
            return "csv", tuple(typing.get_args(item))
        if item in (str, int):
            return "list", ()
    return None


def section_fields(
    model: type[BaseModel], prefix: str = "", skip: Iterable[str] = ()
) -> tuple[list[FormField], dict[str, tuple[str, list[FormField]]]]:
    """Plain fields of `model`, and its nested sections as {name: (description, fields)}."""
    plain: list[FormField] = []
    nested: dict[str, tuple[str, list[FormField]]] = {}
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            inner, _ = section_fields(annotation, f"{prefix}{name}.")
            nested[name] = (info.description or name, inner)
            continue
        kind = _kind(annotation)
        if kind is not None:
            plain.append(FormField(f"{prefix}{name}", info, *kind))
    return plain, nested


def section_value(recipe: Recipe, section: str, key: str) -> Any:
    node: Any = getattr(recipe, section)
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _toml_value(value: Any) -> str:
    """A value written as in a TOML file (`["The ", "\\n"]`), so any string survives the form."""
    import json

    # JSON's string escapes are valid in TOML basic strings.
    return "[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in value) + "]"


# The control `_control` makes for each kind: a checkbox, a select, else a line of text.
FieldControl = Checkbox | Select[str] | Input


class SectionForm(Widget):
    """Every editable field of one recipe section; `primary` fields first, the rest folded away."""

    @dataclass
    class Changed(Message):
        """A change was validated; `valid` says whether the recipe took it."""

        form: SectionForm
        valid: bool

    def __init__(
        self,
        section: str,
        primary: Iterable[str] = (),
        skip: Iterable[str] = (),
        more_title: str = "More settings",
        title: str = "",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.section = section
        self.title = title
        self.primary = list(primary)
        model = Recipe.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), f"{section} is not a recipe section"
        self.model = model
        self.plain, self.nested = section_fields(self.model, skip=skip)
        self.more_title = more_title
        self.controls: dict[str, FieldControl] = {}
        self.errors: dict[str, str] = {}
        self._fields = {f.key: f for f in self.plain}
        for _, inner in self.nested.values():
            self._fields.update({f.key: f for f in inner})

    # Layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        first = [self._fields[name] for name in self.primary if name in self._fields]
        rest = [f for f in self.plain if f.key not in self.primary]
        if self.title:
            yield Static(self.title, classes="heading")
        yield from self._rows(first)
        yield Static("", classes="form-error", id=f"{self.section}-error")
        if rest:
            with Collapsible(title=self.more_title, collapsed=True):
                yield from self._rows(rest)
        for name, (description, inner) in self.nested.items():
            with Collapsible(title=f"{name}: {description}", collapsed=True):
                yield from self._rows(inner)

    def _rows(self, fields: list[FormField]) -> ComposeResult:
        for field in fields:
            control = self._control(field)
            control.tooltip = field.info.description
            self.controls[field.key] = control
            with Vertical(classes="field-row"):
                with Horizontal(classes="field"):
                    yield Label(field.key, classes="field-label")
                    yield control
                yield Static("", classes="field-error", id=f"err-{self.section}-{field.key.replace('.', '-')}")

    def _control(self, field: FormField) -> FieldControl:
        if field.kind == "checkbox":
            return Checkbox("", compact=True)
        if field.kind == "select":
            return Select([(c, c) for c in field.choices], allow_blank=False, compact=True)
        placeholder = {"csv": ", ".join(field.choices), "list": '["a", "b"]  (a TOML list of strings)'}.get(
            field.kind, ""
        )
        return InTurnInput(placeholder=placeholder, compact=True)

    # Values ------------------------------------------------------------------------------------
    def load(self, recipe: Recipe) -> None:
        """Show the recipe's values (without triggering validation)."""
        for key, control in self.controls.items():
            value = section_value(recipe, self.section, key)
            field = self._fields[key]
            with control.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
                if isinstance(control, Checkbox):
                    control.value = bool(value)
                elif isinstance(control, Select):
                    control.value = value
                elif field.kind == "list":
                    control.value = _toml_value(value)
                elif field.kind == "csv":
                    control.value = ", ".join(value)
                else:
                    control.value = str(value)
        self._show_errors({})

    def values(self) -> dict[str, Any]:
        """The raw values of every field, as the loader would read them from TOML."""
        values: dict[str, Any] = {}
        for key, control in self.controls.items():
            kind = self._fields[key].kind
            if isinstance(control, (Checkbox, Select)):
                values[key] = control.value
            elif kind == "list":
                values[key] = parse_toml_value(control.value)
            elif kind == "csv":
                values[key] = [part.strip() for part in control.value.split(",") if part.strip()]
            else:
                values[key] = control.value.strip()
        return values

    @property
    def valid(self) -> bool:
        return not self.errors

    def validate_now(self) -> bool:
        errors = wizard_of(self).state.try_update(self.section, self.values())
        self._show_errors(errors)
        self.post_message(self.Changed(self, not errors))
        return not errors

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        mine = f"{self.section}."
        general = []
        for key in self.controls:
            text = errors.get(mine + key, "")
            label = self.query_one(f"#err-{self.section}-{key.replace('.', '-')}", Static)
            label.update(f"{mine}{key}: {text}" if text else "")
            label.display = bool(text)
            self.controls[key].set_class(bool(text), "-invalid")
        for key, text in errors.items():
            if key.removeprefix(mine) not in self.controls:
                # A rule across fields names its keys itself ("model.dim (30) must be a multiple of ...").
                general.append(text if key == self.section else f"{key}: {text}")
        summary = self.query_one(f"#{self.section}-error", Static)
        summary.update("\n".join(general))
        summary.display = bool(general)

    # Events ------------------------------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.validate_now()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.validate_now()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.validate_now()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        key = next((key for key, control in self.controls.items() if control is event.widget), None)
        if key is not None:  # the screen shows it on its help line
            self.post_message(self.FieldFocused(f"[b]{self.section}.{key}[/b]  {self._fields[key].info.description}"))

    @dataclass
    class FieldFocused(Message):
        """A field got the focus: `help` describes it (markup)."""

        help: str

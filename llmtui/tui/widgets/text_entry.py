"""Textual's text entry widgets, with their editing keys applied in the order they were typed.

Textual inserts a typed character as soon as the widget reads its key, but runs a bound key (backspace,
delete, arrows, home/end, ctrl+w, ...) only when the key has travelled back up to the app. Keys that arrive
in one burst (a fast typist, a key macro, keys sent through tmux) then apply out of order: End, Backspace
three times, "6", "0" on "40" left "" in a wizard field instead of "60" (Textual issue #6605, open in 8.2).
Here the widget runs its own bindings when it reads the key, so every key applies in turn.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input, TextArea


class _KeysInTurn:
    """Runs the widget's own non-priority key bindings inline, before the next key is read."""

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable and await self._run_own_binding(event.key):
            event.stop()
            event.prevent_default()  # the app must not run the binding a second time
            return
        await super()._on_key(event)  # type: ignore[misc]

    async def _run_own_binding(self, key: str) -> bool:
        widget = self  # the Input or TextArea this is mixed into
        assert isinstance(widget, (Input, TextArea))
        for binding in widget._bindings.key_to_bindings.get(key, ()):
            # Priority bindings were offered before the key reached the widget; the rest are the widget's own.
            if not binding.priority and await widget.app.run_action(binding.action, widget):
                return True
        return False


class InTurnInput(_KeysInTurn, Input):
    """`textual.widgets.Input` whose editing keys apply in the order typed (its messages are Input's)."""


class InTurnTextArea(_KeysInTurn, TextArea):
    """`textual.widgets.TextArea` whose editing keys apply in the order typed (its messages are TextArea's)."""

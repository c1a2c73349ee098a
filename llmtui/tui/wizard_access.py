"""The wizard app as the screens and widgets see it: Textual types `node.app` as a plain `App`."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

if TYPE_CHECKING:  # the app imports every screen and widget: a runtime import here would be circular
    from llmtui.tui.app import WizardApp


def wizard_of(node: DOMNode) -> WizardApp:
    """The `WizardApp` running `node` (every screen and widget of the package runs only in it)."""
    return cast("WizardApp", node.app)

"""Widgets of the wizard: the step bar, recipe forms, the cost panel and the loss chart."""

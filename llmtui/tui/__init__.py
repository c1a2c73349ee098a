"""The Textual wizard: every step from raw text to a usable model (`llmtui`, `llmtui web`)."""

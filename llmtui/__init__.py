"""llmtui: build, train, evaluate and use your own language model from the terminal."""

__version__ = "0.1.0"

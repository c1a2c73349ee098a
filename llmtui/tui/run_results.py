"""What a finished run left that the steps use: its trained tokenizer and a generator over its final model.

Loaded once per file and kept until the file changes (a new run writes new ones).
"""

from __future__ import annotations


class RunResults:
    def __init__(self, state):
        self.state = state
        self._tokenizer: tuple | None = None
        self._generator: tuple | None = None

    def forget(self) -> None:
        self._tokenizer = self._generator = None

    def trained_tokenizer_settings(self) -> dict | None:
        """The tokenizer settings the run's manifest recorded (None before any run)."""
        recipe = self.state.run.read_manifest().get("recipe")
        return recipe.get("tokenizer") if isinstance(recipe, dict) else None

    def tokenizer(self):
        """The run's trained tokenizer, or None."""
        folder = self.state.run.tokenizer_dir
        if not (folder / "tokenizer.json").is_file():
            return None
        key = (folder, (folder / "tokenizer.json").stat().st_mtime_ns)
        if self._tokenizer is None or self._tokenizer[0] != key:
            from llmtui.tokenizers import TextTokenizer

            self._tokenizer = (key, TextTokenizer.load(folder))
        return self._tokenizer[1]

    def generator(self):
        """A Generator over the run's final model. Call from a worker thread (it may load Keras)."""
        from llmtui.backend import configure_backend

        run = self.state.run
        key = (run.root, run.final_model_path.stat().st_mtime_ns)
        if self._generator is None or self._generator[0] != key:
            configure_backend(self.state.recipe.run.backend)
            from llmtui.generation.sampler import Generator
            from llmtui.runfolder import load_final_model
            from llmtui.tokenizers import TextTokenizer

            model = load_final_model(run)
            self._generator = (
                key,
                Generator(model, TextTokenizer.load(run.tokenizer_dir), self.state.recipe.model.context),
            )
        return self._generator[1]

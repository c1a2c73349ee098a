"""The embedded default corpus: English prose that ships with every CPython.

`builtin:python-docs` is the language reference topics of `pydoc_data` (the text behind `help("if")`)
followed by the docstrings of the standard library's own modules, classes and functions, read with `ast`
from the installed sources (nothing is imported, so nothing runs). No download, always present.
"""

from __future__ import annotations

import ast
import os
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

BUILTIN_CORPORA = ("python-docs",)

# Folders of the standard library whose docstrings are test scaffolding or third-party code, not prose.
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3", "turtledemo"}
_MIN_DOCSTRING_CHARS = 60


def builtin_fingerprint(name: str) -> str:
    """What decides the corpus's contents: the Python version that provides it."""
    import platform

    return f"{name}@python-{platform.python_version()}"


def iter_builtin(name: str) -> Iterator[tuple[str, str]]:
    """Yield (origin, text) documents of a builtin corpus."""
    if name != "python-docs":
        raise KeyError(name)
    yield from _pydoc_topics()
    yield from _stdlib_docstrings()


def _pydoc_topics() -> Iterator[tuple[str, str]]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions strip pydoc_data; the docstrings still make a corpus
        return
    for key in sorted(topics):
        yield f"pydoc_data:{key}", topics[key]


def _stdlib_docstrings() -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for filename in sorted(files):
            if not filename.endswith(".py"):
                continue
            path = Path(folder, filename)
            try:
                source = path.read_text(encoding="utf-8")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # invalid escape sequences in old modules
                    tree = ast.parse(source)
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
            relative = path.relative_to(root).as_posix()
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node, clean=True)
                    if doc and len(doc) >= _MIN_DOCSTRING_CHARS:
                        name = getattr(node, "name", "<module>")
                        yield f"stdlib:{relative}:{name}", doc

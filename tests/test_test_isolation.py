"""The suite's own guard: tests run outside the checkout, and a test that leaves a file there fails."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")


def test_tests_run_in_a_temporary_folder(tmp_path):
    assert Path.cwd() == tmp_path
    assert not Path.cwd().resolve().is_relative_to(CONFTEST.parents[1])


def test_a_test_that_leaves_a_file_in_the_checkout_fails(pytester, monkeypatch, tmp_path_factory):
    """Our conftest, in a checkout of its own: the test writing into the checkout fails, its neighbour not."""
    (pytester.path / "tests").mkdir()
    for name in ("conftest.py", "helpers.py"):  # the conftest and the helpers it imports
        (pytester.path / "tests" / name).write_text(
            CONFTEST.with_name(name).read_text(encoding="utf-8"), encoding="utf-8"
        )
    (pytester.path / "tests" / "test_inner.py").write_text(
        "from tests.conftest import REPOSITORY\n"
        "def test_writes_into_the_checkout():\n"
        "    (REPOSITORY / 'leftover.txt').write_text('x')\n"
        "def test_writes_where_it_runs():\n"
        "    open('scratch.txt', 'w').write('x')\n",
        encoding="utf-8",
    )
    (pytester.path / "tests" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "tests", f"--basetemp={tmp_path_factory.mktemp('inner')}"
    )
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the test left files in the repository: leftover.txt*"])
    assert not (pytester.path / "scratch.txt").exists()

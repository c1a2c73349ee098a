"""Hyperparameter search: small real studies on a tiny model, and every bad input caught before any trial."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmtui.config import load_recipe, recipe_from_dict
from llmtui.errors import RecipeError
from tests.helpers import tiny_recipe_dict, write_corpus

optuna = pytest.importorskip("optuna")

TRAIN = {"steps": 10, "eval_every": 5, "warmup_steps": 2, "jit_compile": False, "log_every": 5, "checkpoint_every": 10}


def tune_dict(tmp_path: Path, name: str = "tiny", **tune) -> dict:
    corpus = tmp_path / "corpus"
    if not corpus.exists():
        write_corpus(corpus)
    data = tiny_recipe_dict(corpus, tmp_path / "runs", train=TRAIN, run={"name": name})
    data["tune"] = {"pruner": "none", **tune}
    return data


def run_study(data: dict, base: Path):
    from llmtui.tuning import Tuner

    tuner = Tuner(recipe_from_dict(data), base)
    return tuner, tuner.run()


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory):
    """A 2 x 2 grid through the command line (live table, final table, best recipe)."""
    import os

    from typer.testing import CliRunner

    from llmtui.cli.app import app

    base = tmp_path_factory.mktemp("grid")
    data = tune_dict(
        base,
        method="grid",
        trials=4,
        space={"train.lr": {"choices": [3e-3, 1e-3]}, "model.layers": {"low": 1, "high": 2}},
    )
    import tomli_w

    (base / "recipe.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        result = CliRunner().invoke(app, ["tune", "recipe.toml"])
    finally:
        os.chdir(cwd)
    return base, data, result


def test_grid_visits_exactly_its_grid(grid_study):
    base, data, result = grid_study
    assert result.exit_code == 0, result.output
    assert "trials, best first" in result.output and "best recipe" in result.output
    run = base / "runs" / "tiny"
    study = optuna.load_study(study_name="llmtui-tiny", storage=f"sqlite:///{run / 'study.db'}")
    visited = sorted((t.params["train.lr"], t.params["model.layers"]) for t in study.trials)
    assert visited == sorted((lr, layers) for lr in (3e-3, 1e-3) for layers in (1, 2))
    assert all(t.state.name == "COMPLETE" for t in study.trials)


def test_trials_share_the_runs_data_and_tokenizer(grid_study):
    base, _, _ = grid_study
    run = base / "runs" / "tiny"
    for number in range(4):
        trial = run / "trials" / f"trial_{number:03d}"
        manifest = json.loads((trial / "manifest.json").read_text())
        for stage in ("data", "tokenizer"):
            # The entry was copied from the run and never rewritten: the trial's pipeline skipped the stage.
            assert manifest["stages"][stage]["shared_from"] == str(run / stage)
        assert (trial / "tokenizer" / "train.bin").stat().st_ino == (run / "tokenizer" / "train.bin").stat().st_ino
        assert (trial / "eval" / "report.json").exists()
        assert list((trial / "logs" / "hparams").glob("events.out.tfevents.*"))


def test_hparams_logs_are_readable_by_tensorboard(grid_study):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    base, _, _ = grid_study
    logs = base / "runs" / "tiny" / "trials" / "trial_000" / "logs" / "hparams"
    events = EventAccumulator(str(logs))
    events.Reload()
    assert {"tune/val_loss", "tune/last_eval_loss"} <= set(events.Tags()["scalars"])  # objective, last evaluation
    content = events.PluginTagToContent("hparams")
    assert content  # the session-start summary with the trial's hyperparameters


def test_best_recipe_reproduces_its_trial(grid_study):
    from llmtui.pipeline import Pipeline

    base, data, _ = grid_study
    run = base / "runs" / "tiny"
    study = optuna.load_study(study_name="llmtui-tiny", storage=f"sqlite:///{run / 'study.db'}")
    best = study.best_trial
    recipe = load_recipe(run / "best_recipe.toml")
    assert recipe.train.lr == best.params["train.lr"] and recipe.model.layers == best.params["model.layers"]
    summary = Pipeline(recipe, base).execute(until="eval")
    assert summary["val_loss"] == pytest.approx(best.value, abs=1e-4)


def test_random_and_bayes_search_their_ranges(tmp_path):
    space = {
        "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
        "model.dim": {"low": 16, "high": 32, "step": 16},
        "model.arch": {"choices": ["gpt", "llama"]},
    }
    for method, trials in (("random", 2), ("bayes", 2)):
        _, result = run_study(tune_dict(tmp_path, name=method, method=method, trials=trials, space=space), tmp_path)
        assert [row["state"] for row in result.trials] == ["complete"] * trials
        values = [row["value"] for row in result.trials]
        assert values == sorted(values)  # best first
        for row in result.trials:
            assert 1e-3 <= row["params"]["train.lr"] <= 1e-2
            assert row["params"]["model.dim"] in (16, 32) and row["params"]["model.arch"] in ("gpt", "llama")
        assert load_recipe(result.best_recipe).train.lr == result.best["params"]["train.lr"]
        assert set(result.importances) == set(space)


def test_median_pruner_stops_a_clearly_worse_trial(tmp_path):
    data = tune_dict(
        tmp_path,
        method="grid",
        trials=2,
        seed=1,
        pruner="median",
        pruner_startup_trials=1,
        space={"train.lr": {"choices": [1e-2, 1e-7]}},
    )
    _, result = run_study(data, tmp_path)
    by_lr = {row["params"]["train.lr"]: row for row in result.trials}
    assert by_lr[1e-2]["number"] == 0  # this seed tries the good rate first
    assert by_lr[1e-2]["state"] == "complete"
    assert by_lr[1e-7]["state"] == "pruned" and by_lr[1e-7]["step"] == 5
    trial = tmp_path / "runs" / "tiny" / "trials" / "trial_001"
    assert not (trial / "eval" / "report.json").exists()  # stopped in training, before its evaluation


def test_resumed_study_does_not_repeat_finished_trials(tmp_path):
    from llmtui.tuning import Tuner

    space = {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    _, first = run_study(tune_dict(tmp_path, method="random", trials=1, space=space), tmp_path)
    report = tmp_path / "runs" / "tiny" / "trials" / "trial_000" / "eval" / "report.json"
    written = report.stat().st_mtime_ns
    # A search killed in the middle of a trial leaves it RUNNING in the study.
    tuner = Tuner(recipe_from_dict(tune_dict(tmp_path, method="random", trials=2, space=space)), tmp_path)
    killed = tuner.study().ask()
    killed_lr = killed.suggest_float("train.lr", 1e-3, 1e-2, log=True)

    _, resumed = run_study(tune_dict(tmp_path, method="random", trials=3, space=space), tmp_path)
    rows = {row["number"]: row for row in resumed.trials}
    assert sorted(rows) == [0, 1, 2, 3]
    for row in first.trials:  # finished trials kept, not run again
        assert rows[row["number"]]["value"] == row["value"]
    assert report.stat().st_mtime_ns == written
    assert rows[1]["state"] == "fail"  # the killed one
    assert rows[2]["state"] == "complete" and rows[2]["params"]["train.lr"] == killed_lr  # and retried
    earlier = {row["params"]["train.lr"] for row in first.trials}
    assert rows[3]["state"] == "complete" and rows[3]["params"]["train.lr"] not in earlier  # not proposed again


def test_a_changed_search_does_not_reuse_the_study(tmp_path):
    from llmtui.tuning import Tuner

    data = tune_dict(tmp_path, method="random", trials=2, space={"train.lr": {"low": 1e-3, "high": 1e-2}})
    Tuner(recipe_from_dict(data), tmp_path).study()
    data["tune"]["space"]["train.lr"]["high"] = 2e-2
    with pytest.raises(RecipeError, match="made for another recipe"):
        Tuner(recipe_from_dict(data), tmp_path).study()


def test_time_budget_ends_a_trial_with_its_last_evaluation(tmp_path):
    data = tune_dict(
        tmp_path, method="random", trials=1, steps=100000, seconds=1.0, space={"train.lr": {"low": 1e-3, "high": 1e-2}}
    )
    _, result = run_study(data, tmp_path)
    row = result.trials[0]
    assert row["state"] == "complete" and math.isfinite(row["value"])
    assert row["value"] == pytest.approx(row["last_intermediate"]) and row["step"] < 100000


@pytest.mark.parametrize(
    "space, method, trials, message",
    [
        ({}, "bayes", 5, "tune.space is empty"),
        ({"train.lrr": {"low": 1e-4, "high": 1e-2}}, "bayes", 5, "has no field 'lrr'"),
        ({"foo.bar": {"low": 1, "high": 2}}, "bayes", 5, "unknown key path"),
        ({"train": {"low": 1, "high": 2}}, "bayes", 5, "unknown key path"),
        ({"data.lowercase": {"choices": [True, False]}}, "bayes", 5, "only model.* and train.*"),
        ({"model.layers": {"low": 4, "high": 2}}, "bayes", 5, "greater than high"),
        ({"model.layers": {"low": 1, "high": 2.5}}, "bayes", 5, "whole number"),
        ({"train.lr": {"low": 1e-4, "high": 200.0}}, "bayes", 5, "200.0 is rejected"),  # lr may go to 100 (SGD)
        ({"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}, "bayes", 5, "low > 0"),
        ({"model.arch": {"choices": ["gpt", "transformer"]}}, "bayes", 5, "'transformer' is rejected"),
        ({"model.arch": {"low": 1, "high": 2}}, "bayes", 5, "search it with choices"),
        (
            {"model.layers": {"low": 1, "high": 4}, "train.lr": {"choices": [1e-3, 1e-2]}},
            "grid",
            5,
            "the grid has 8 points but tune.trials is 5",
        ),
        ({"train.lr": {"low": 1e-3, "high": 1e-2}}, "grid", 5, "a grid needs a step"),
    ],
)
def test_bad_search_spaces_are_one_clear_error(tmp_path, space, method, trials, message):
    from llmtui.tuning import Tuner

    data = tune_dict(tmp_path, method=method, trials=trials, space=space)
    with pytest.raises(RecipeError, match=message.replace("*", r"\*").replace("(", r"\(")):
        Tuner(recipe_from_dict(data), tmp_path)
    assert not (tmp_path / "runs").exists()  # caught before anything ran


def test_cli_reports_a_bad_space_without_a_traceback(tmp_path, monkeypatch):
    import tomli_w
    from typer.testing import CliRunner

    from llmtui.cli.app import app

    data = tune_dict(tmp_path, method="grid", trials=1, space={"model.layers": {"low": 1, "high": 3}})
    (tmp_path / "bad.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["tune", "bad.toml"])
    assert result.exit_code == 2
    assert "the grid has 3 points but tune.trials is 1" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_workers_share_one_study(tmp_path):
    from llmtui.tuning import Tuner

    data = tune_dict(tmp_path, method="random", trials=3, space={"train.lr": {"low": 1e-3, "high": 1e-2}})
    result = Tuner(recipe_from_dict(data), tmp_path).run(workers=2)
    assert len(result.trials) == 3 and all(row["state"] == "complete" for row in result.trials)
    assert len({row["params"]["train.lr"] for row in result.trials}) == 3  # each worker samples its own values


def test_ladder_matches_parameters_and_reports_bits_per_byte(tmp_path, monkeypatch):
    import tomli_w
    from typer.testing import CliRunner

    from llmtui.cli.app import app

    data = tune_dict(tmp_path, name="ladder")
    data["train"]["steps"] = 5
    (tmp_path / "r.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ladder", "r.toml", "--archs", "gru,gpt"])
    assert result.exit_code == 0, result.output
    assert "report card" in result.output
    folder = tmp_path / "runs" / "ladder" / "ladder"
    report = json.loads((folder / "report.json").read_text())
    rungs = {r["arch"]: r for r in report["rungs"]}
    assert set(rungs) == {"gru", "gpt"} and rungs["gpt"]["dim"] == 32
    assert abs(math.log(rungs["gru"]["parameters"] / rungs["gpt"]["parameters"])) < 0.25  # matched sizes
    assert all(r["bits_per_byte"] > 0 and r["curve"] for r in report["rungs"])
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for arch in ("gru", "gpt"):
        manifest = json.loads((folder / arch / "manifest.json").read_text())
        assert manifest["stages"]["tokenizer"]["shared_from"] == str(tmp_path / "runs" / "ladder" / "tokenizer")


def test_ladder_rejects_unknown_architectures(tmp_path):
    from llmtui.tuning.ladder import run_ladder

    with pytest.raises(RecipeError, match="unknown architecture transformer"):
        run_ladder(recipe_from_dict(tune_dict(tmp_path)), tmp_path, archs=("gpt", "transformer"))
    with pytest.raises(RecipeError, match="needs --seconds"):
        run_ladder(recipe_from_dict(tune_dict(tmp_path)), tmp_path, match="time")


def test_a_study_in_another_storage_url(tmp_path):
    """`--storage URL`: the study lives in the given database (here another SQLite file), not the run folder."""
    from llmtui.tuning import Tuner

    url = f"sqlite:///{tmp_path / 'shared' / 'studies.db'}"
    (tmp_path / "shared").mkdir()
    data = tune_dict(tmp_path, method="random", trials=1, space={"train.lr": {"low": 1e-3, "high": 3e-3}})
    result = Tuner(recipe_from_dict(data), tmp_path, storage=url).run()
    assert [row["state"] for row in result.trials] == ["complete"]
    assert (tmp_path / "shared" / "studies.db").stat().st_size > 0
    assert not (tmp_path / "runs" / "tiny" / "study.db").exists()
    again = optuna.load_study(study_name="llmtui-tiny", storage=url)
    assert len(again.trials) == 1 and again.trials[0].value == pytest.approx(result.trials[0]["value"])


# Several machines sharing one study -------------------------------------------------------------
def _machine(folder: Path, trials: int) -> Path:
    """A folder standing for one machine: the same recipe with relative paths, and its own copy of the corpus."""
    import tomli_w

    folder.mkdir()
    write_corpus(folder / "corpus")
    data = tiny_recipe_dict(Path("corpus"), Path("runs"), train={**TRAIN, "steps": 6, "eval_every": 3})
    data["tune"] = {
        "pruner": "none",
        "method": "random",
        "trials": trials,
        "space": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
    }
    (folder / "recipe.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    return folder


def _tune_processes(folders: list[Path], storage: str, workers: int = 1) -> list:
    """`llmtui tune --storage URL` started at once in each folder, as separate machines would run it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200", "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "llmtui", "tune", "recipe.toml", "--storage", storage, "--workers", str(workers)],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for folder in folders
    ]
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output
    return outputs


def _check_shared_study(storage, trials: int) -> set[str]:
    """Exactly `trials` finished trials, each once: none queued, running, failed or run twice."""
    study = optuna.load_study(study_name="llmtui-tiny", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE"] * trials, states
    assert len({t.params["train.lr"] for t in study.trials}) == trials  # no values run twice
    assert len({t.number for t in study.trials}) == trials
    for t in study.trials:  # each trial's run folder holds its evaluation, on the machine that ran it
        assert (Path(t.user_attrs["folder"]) / "eval" / "report.json").exists()
    return {t.user_attrs["worker"] for t in study.trials}


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL server in a temporary folder, on 127.0.0.1 and a free port, stopped at the end. PostgreSQL
    refuses to run as root: as root, the server runs as the `postgres` system user."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    pytest.importorskip("psycopg", reason="PostgreSQL's driver psycopg is not installed (pip install '.[postgres]')")
    binaries = {name: shutil.which(name) or f"/usr/lib/postgresql/15/bin/{name}" for name in ("initdb", "pg_ctl")}
    if not all(os.access(path, os.X_OK) for path in binaries.values()):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: PostgreSQL cannot be started as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's temporary folders: those are private to this user, and the server runs as another.
    folder = Path(tempfile.mkdtemp(prefix="llmtui-pg-"))
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        [*as_user, binaries["initdb"], "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    subprocess.run(
        [
            *as_user,
            binaries["pg_ctl"],
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_two_machines_share_a_study_in_postgresql(tmp_path, postgres_url):
    """Two `llmtui tune --storage postgresql://...` processes in two folders (two machines) finish the study's
    trials together: each trial runs once, none is lost, both take part."""
    folders = [_machine(tmp_path / name, trials=4) for name in ("a", "b")]
    outputs = _tune_processes(folders, postgres_url)
    workers = _check_shared_study(postgres_url, trials=4)
    assert len(workers) == 2, outputs  # both processes claimed trials
    assert all("best recipe" in output for output in outputs)


def test_workers_share_a_journal_file_study(tmp_path):
    """`--storage journal:PATH` (a file on a shared filesystem) with two worker processes."""
    folder = _machine(tmp_path / "a", trials=3)
    journal = tmp_path / "shared" / "study.journal"
    journal.parent.mkdir()
    _tune_processes([folder], f"journal:{journal}", workers=2)
    _check_shared_study(
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))), trials=3
    )
    assert not (folder / "runs" / "tiny" / "study.db").exists()


@pytest.mark.parametrize(
    "storage, message",
    [
        ("redis://localhost/0", "unknown study storage redis://localhost/0"),
        ("journal:/no/such/folder/study.journal", "the journal storage's folder /no/such/folder does not exist"),
        ("postgresql://nobody@127.0.0.1:9/none", "cannot open the study storage postgresql://nobody@127.0.0.1:9/none"),
    ],
)
def test_cli_reports_a_bad_storage_without_a_traceback(tmp_path, storage, message):
    import os
    import subprocess
    import sys

    folder = _machine(tmp_path / "a", trials=2)
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "tune", "recipe.toml", "--storage", storage],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout

"""Run integrity after faults, through real `llmtui` processes: every stage interrupted (SIGINT and SIGKILL) with a
changed recipe and then rerun with the original, a kill -9 during training, copied and damaged run folders, old
manifests, and `--fresh` on a folder that is not a run.

One run of the tiny recipe (1 layer, 32 wide, char; a 3 MB corpus so the data and tokenizer stages last long
enough to be interrupted) is made once and copied for each test. The processes use JAX, which starts faster than
TensorFlow; the backend plays no part in what is checked here.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llmtui.runfolder import STAGES, RunFolder, file_digest
from tests.helpers import WORDS, llmtui_env, run_llmtui, tiny_recipe_dict, write_corpus, write_recipe

# A change to each stage's own section: the stage (and those after it) must run again, and take long enough
# to be interrupted (the whole validation split for eval, 5000 tokens for generate).
CHANGES = {
    "data": "data.chunk_chars=300",
    "tokenizer": "tokenizer.kind=byte",
    "model": "model.dropout=0.1",
    "train": "train.lr=0.001",
    "eval": "eval.max_batches=0",
    "generate": "generate.max_tokens=5000",
}


def jax_env() -> dict[str, str]:
    """These runs are on JAX, their output unbuffered (read while they run)."""
    return llmtui_env(KERAS_BACKEND="jax", PYTHONUNBUFFERED="1")


def llmtui(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_llmtui(*args, cwd=cwd, env=jax_env(), timeout=timeout)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """(folder, recipe, the finished run's manifest): the tiny recipe run once, on a 3 MB corpus."""
    folder = tmp_path_factory.mktemp("integrity")
    corpus = write_corpus(folder / "corpus")
    rng = random.Random(1)
    lines, size = [], 0
    while size < 3_000_000:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))) + f" {rng.randint(0, 10**6)}"
        lines.append(line)
        size += len(line) + 1
    (corpus / "big.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = write_recipe(
        folder / "tiny.toml",
        tiny_recipe_dict(
            corpus, folder / "runs", data={"workers": 1}, train={"steps": 20, "eval_every": 10, "checkpoint_every": 10}
        ),
    )
    done = llmtui(folder, "run", str(recipe))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, recipe, RunFolder(folder / "runs" / "tiny").read_manifest()


def copy_run(base_run, tmp_path: Path, name: str = "tiny") -> Path:
    folder, _, _ = base_run
    target = tmp_path / "runs" / name
    shutil.copytree(folder / "runs" / "tiny", target)
    return target


def interrupt(cwd: Path, args: list[str], stage: str, sig: int) -> str:
    """Start `llmtui run ...`, send `sig` to it (and its process group) once "▶ stage" is printed; its output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llmtui", "run", *args],
        cwd=cwd,
        env=jax_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.strip() == f"▶ {stage}":
                os.killpg(process.pid, sig)
                break
        seen.append(process.stdout.read())
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(seen)
    assert f"▶ {stage}" in output, output[-3000:]
    assert process.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), output[-3000:]
    if sig == signal.SIGINT:
        assert "interrupted" in output and "Traceback" not in output, output[-3000:]
    assert f"✓ {stage} " not in output, f"{stage} finished before the signal: {output[-2000:]}"
    return output


def assert_committed_state_only(root: Path, base: dict, stage: str) -> None:
    """After an interrupted stage: the manifest holds only entries of the earlier committed state, each of whose
    outputs is intact, none for the interrupted stage or after it, and the stage's own committed files are the
    ones of before (its new ones never left the staging folder)."""
    run = RunFolder(root)
    stages = run.read_manifest()["stages"]
    index = STAGES.index(stage)
    assert set(stages) == set(STAGES[:index]), (stage, sorted(stages))
    for name, entry in stages.items():
        assert entry["fingerprint"] == base["stages"][name]["fingerprint"], name
        assert run.check_outputs(entry) is None, (name, run.check_outputs(entry))
    assert run.check_outputs(base["stages"][stage]) is None, run.check_outputs(base["stages"][stage])


def assert_consistent(root: Path, base: dict) -> None:
    """A finished run of the original recipe: every stage recorded with the original fingerprint and intact
    outputs; tokenizer, token files, model and checkpoint agree."""
    run = RunFolder(root)
    stages = run.read_manifest()["stages"]
    assert set(stages) == set(STAGES)
    for name, entry in stages.items():
        assert entry["fingerprint"] == base["stages"][name]["fingerprint"], name
        assert run.check_outputs(entry) is None, (name, run.check_outputs(entry))
    for name in ("data", "tokenizer", "model"):  # deterministic outputs (not the reports' timings): the same files
        kept = {k: v for k, v in stages[name]["digests"].items() if not k.endswith("report.json")}
        assert kept == {k: v for k, v in base["stages"][name]["digests"].items() if k in kept}, name
        assert len(kept) >= 1
    tokens = json.loads((root / "tokenizer" / "tokens.json").read_text())
    meta = json.loads((root / "tokenizer" / "llmtui_tokenizer.json").read_text())
    architecture = json.loads((root / "model" / "architecture.json").read_text())
    assert tokens["kind"] == meta["kind"] == "char"
    assert tokens["vocab_size"] == architecture["vocab_size"] == base["stages"]["tokenizer"]["summary"]["vocab_size"]
    assert architecture["config"]["dropout"] == 0.0
    latest = sorted((root / "checkpoints").glob("step_*"))[-1]
    state = json.loads((latest / "state.json").read_text())
    assert state["fingerprint"] == stages["train"]["fingerprint"] and state["step"] == 20
    assert not (root / ".staging").exists()


@pytest.mark.parametrize("stage", STAGES)
def test_an_interrupted_stage_leaves_the_committed_state_and_a_rerun_redoes_it(base_run, tmp_path, stage):
    folder, recipe, base = base_run
    root = copy_run(base_run, tmp_path)
    args = [str(recipe), "--set", f"run.out_dir={tmp_path / 'runs'}"]
    for sig in (signal.SIGINT, signal.SIGKILL):
        interrupt(folder, args + ["--set", CHANGES[stage]], stage, sig)
        assert_committed_state_only(root, base, stage)
    rerun = llmtui(folder, "run", *args)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    index = STAGES.index(stage)
    for name in STAGES[:index]:
        assert f"✓ {name}: skipped" in rerun.stdout, (name, rerun.stdout[-3000:])
    for name in STAGES[index:]:
        assert f"▶ {name}" in rerun.stdout, (name, rerun.stdout[-3000:])
    assert_consistent(root, base)


def test_kill_9_during_training_then_rerun_resumes(base_run, tmp_path):
    """kill -9 once a checkpoint exists; the same command continues from it and finishes a consistent run."""
    import time

    folder, recipe, base = base_run
    root = copy_run(base_run, tmp_path)
    args = [
        "run",
        str(recipe),
        "--set",
        f"run.out_dir={tmp_path / 'runs'}",
        "--set",
        "train.steps=120",
        "--set",
        "train.checkpoint_every=5",
        "--set",
        "train.eval_every=120",
        "--until",
        "train",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmtui", *args],
        cwd=folder,
        env=jax_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    old = base["stages"]["train"]["fingerprint"]  # the copied run's own checkpoints (steps 10 and 20)

    def new_checkpoints() -> list[int]:
        states = []
        for path in (root / "checkpoints").glob("step_*"):
            try:
                states.append(json.loads((path / "state.json").read_text()))
            except (OSError, ValueError):
                continue  # being written or replaced
        return [s["step"] for s in states if s["fingerprint"] != old]

    try:
        while time.monotonic() < deadline and process.poll() is None and not new_checkpoints():
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kept = max(new_checkpoints())
    assert 5 <= kept < 120
    assert "train" not in RunFolder(root).read_manifest()["stages"]
    assert RunFolder(root).check_outputs(base["stages"]["train"]) is None  # the old final model was kept
    rerun = llmtui(folder, *args)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resuming from checkpoint step_{kept:07d} (step {kept})" in rerun.stdout
    entry = RunFolder(root).read_manifest()["stages"]["train"]
    assert entry["summary"]["steps"] == 120 and RunFolder(root).check_outputs(entry) is None


def test_a_copied_run_with_a_missing_or_damaged_output_redoes_that_stage(base_run, tmp_path):
    folder, recipe, base = base_run
    root = copy_run(base_run, tmp_path, "copy")
    args = [
        "run",
        str(recipe),
        "--set",
        f"run.out_dir={tmp_path / 'runs'}",
        "--set",
        "run.name=copy",
        "--until",
        "tokenizer",
    ]
    same = llmtui(folder, *args)
    assert same.returncode == 0 and "✓ data: skipped" in same.stdout and "✓ tokenizer: skipped" in same.stdout
    (root / "tokenizer" / "tokenizer.json").unlink()
    with open(root / "data" / "val.jsonl", "r+b") as handle:  # same size, one byte changed
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(b"#" if byte != b"#" else b"$")
    redone = llmtui(folder, *args)
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert "data: data/val.jsonl changed since it was written; redoing" in redone.stdout
    assert "▶ tokenizer" in redone.stdout  # after the data stage, and its tokenizer.json was gone
    stages = RunFolder(root).read_manifest()["stages"]
    assert stages["data"]["digests"]["data/val.jsonl"] == base["stages"]["data"]["digests"]["data/val.jsonl"]
    assert all(RunFolder(root).check_outputs(e) is None for e in stages.values())


def test_a_truncated_model_is_detected_and_a_clear_error_for_generate(base_run, tmp_path):
    root = copy_run(base_run, tmp_path)
    _, _, base = base_run
    model = root / "model" / "final.keras"
    with open(model, "r+b") as handle:
        handle.truncate(model.stat().st_size // 2)
    assert RunFolder(root).check_outputs(base["stages"]["train"]) == "model/final.keras changed since it was written"
    out = llmtui(tmp_path, "generate", str(root), "--prompt", "the ")
    assert out.returncode == 1 and "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert f"{root}/model/final.keras cannot be read as a Keras model" in out.stderr
    assert "run the recipe again" in out.stderr


def test_an_old_manifest_with_absolute_paths_is_migrated(base_run, tmp_path):
    """Manifests before format 2 kept absolute output paths and a sha256 per file name; a moved run still reads them."""
    _, _, base = base_run
    root = copy_run(base_run, tmp_path)
    elsewhere = "/somewhere/else/runs/tiny"
    old = {
        "stages": {
            name: {
                **entry,
                "outputs": [f"{elsewhere}/{o}" for o in entry["outputs"]],
                "digests": {Path(o).name: file_digest(root / o) for o in entry["digests"]},
            }
            for name, entry in base["stages"].items()
        }
    }
    (root / "manifest.json").write_text(json.dumps(old))
    migrated = RunFolder(root).read_manifest()
    assert migrated["stages"]["tokenizer"]["outputs"] == base["stages"]["tokenizer"]["outputs"]
    assert all(RunFolder(root).check_outputs(e) is None for e in migrated["stages"].values())
    (root / "tokenizer" / "tokens.json").write_text("{}")
    assert (
        RunFolder(root).check_outputs(migrated["stages"]["tokenizer"])
        == "tokenizer/tokens.json changed since it was written"
    )


def test_fresh_refuses_a_folder_that_is_not_a_run(base_run, tmp_path):
    _, recipe, _ = base_run
    precious = tmp_path / "precious"
    (precious / "src").mkdir(parents=True)
    (precious / "src" / "t.tex").write_text("x")
    out = llmtui(
        tmp_path,
        "run",
        str(recipe),
        "--set",
        "run.out_dir=.",
        "--set",
        "run.name=precious",
        "--until",
        "data",
        "--fresh",
    )
    assert out.returncode == 1
    assert f"--fresh would delete {precious}, which is not a run folder" in out.stderr
    assert (precious / "src" / "t.tex").read_text() == "x"
    # A run folder is cleared, and so is an empty one.
    root = copy_run(base_run, tmp_path)
    (tmp_path / "runs" / "empty").mkdir()
    for name in ("tiny", "empty"):
        out = llmtui(
            tmp_path,
            "run",
            str(recipe),
            "--set",
            f"run.out_dir={tmp_path / 'runs'}",
            "--set",
            f"run.name={name}",
            "--until",
            "data",
            "--fresh",
        )
        assert out.returncode == 0, out.stderr[-2000:]
    assert not (root / "checkpoints").exists() and (root / "data" / "train.jsonl").exists()


def test_eval_report_and_export_refuse_a_run_folder_in_use(base_run, tmp_path):
    """They write into the run folder, so they take its lock: a run in progress is not written under."""
    root = copy_run(base_run, tmp_path)
    with RunFolder(root):
        for command in (["eval", str(root)], ["report", str(root)], ["export", str(root)]):
            out = llmtui(tmp_path, *command)
            assert out.returncode == 1 and f"run folder {root} is in use by pid {os.getpid()}" in out.stderr, (
                command,
                out.stderr[-2000:],
            )
            assert "Traceback" not in out.stderr

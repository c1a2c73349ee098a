"""`llmtui launch --processes N RECIPE`: one training job in N local processes on 127.0.0.1 (JAX or TensorFlow).

The launcher only starts and watches `llmtui run` processes, with the variables each runtime reads (JAX's
JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID, or TensorFlow's TF_CONFIG); the job itself is the
backend's own (see llmtui.training.cluster). It never imports the library's heavy parts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import RecipeArg, SetOpt, user_errors

STOP_GRACE_SECONDS = 30  # after Ctrl-C, how long the processes get to write a checkpoint and end
FAILED_GRACE_SECONDS = 5  # after one process failed, the others (stuck in collectives) are killed after this


cli = typer.Typer()


@cli.command()
def launch(
    recipe: RecipeArg,
    processes: Annotated[
        int, typer.Option("--processes", "-n", min=1, max=64, help="Number of processes of the job.")
    ] = 2,
    set_: SetOpt = None,
    until: Annotated[
        str | None, typer.Option(help="Stop after this stage: data, tokenizer, model, train, eval or generate.")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over: clear the run folder first.")] = False,
    port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Coordinator port on 127.0.0.1 (0 = a free one); TensorFlow: process i listens on PORT+i.",
        ),
    ] = 0,
) -> None:
    """Run a recipe as one training job of N processes on this machine (JAX or TensorFlow, loopback only).

    Each process runs llmtui run RECIPE exactly as on N hosts: on JAX with JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT, JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=i; on TensorFlow with a TF_CONFIG listing the N workers (MultiWorkerMirroredStrategy). Process 0 prints here and writes the run folder; the others log to runs/<name>/processes/process-I.log. If one process dies, the others are stopped and the command fails; running it again resumes from the last checkpoint.
    """  # noqa: E501  (Typer's rich help keeps a docstring's line breaks: one paragraph, one line)
    with user_errors():
        from llmtui.backend import chosen_backend
        from llmtui.config import load_recipe
        from llmtui.errors import LlmtuiError, RecipeError
        from llmtui.runfolder import RunFolder

        config = load_recipe(recipe, set_ or [])
        backend = chosen_backend(config.run.backend)
        if backend not in ("jax", "tensorflow"):
            raise RecipeError(
                f"llmtui launch runs JAX's or TensorFlow's multi-process runtime; the backend is {backend}",
                hint="set run.backend = 'jax' or 'tensorflow' (or KERAS_BACKEND)",
            )
        if config.train.distribute == "none":
            raise RecipeError(
                "llmtui launch splits each batch between the processes: train.distribute is 'none'",
                hint="--set train.distribute=data_parallel",
            )
        if config.train.batch_size % processes:
            raise RecipeError(
                f"train.batch_size ({config.train.batch_size}) must be a multiple of the {processes} processes"
            )
        run = RunFolder.of_recipe(config, Path.cwd())
        if fresh:  # here, before any process starts: none of them may see the old folder
            run.clear()
        logs = run.root / "processes"
        logs.mkdir(parents=True, exist_ok=True)
        if backend == "jax":
            address = f"127.0.0.1:{port or _free_port()}"
            workers = []
        else:  # every TensorFlow worker serves its own gRPC port
            workers = [
                f"127.0.0.1:{p}" for p in ([port + i for i in range(processes)] if port else _free_ports(processes))
            ]
            address = workers[0]
        command = [sys.executable, "-m", "llmtui", "run", str(recipe)]
        for item in set_ or []:
            command += ["--set", item]
        if until:
            command += ["--until", until]
        typer.echo(
            f"launch: {processes} processes, coordinator {address}; processes 1-{processes - 1} log to {logs}"
            if processes > 1
            else f"launch: 1 process, coordinator {address}"
        )
        children = []
        # Stopped by a signal (a scheduler's SIGTERM, `timeout`): end the processes as on Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        for index in range(processes):
            env = {
                key: value
                for key, value in os.environ.items()
                if key not in ("TF_CONFIG", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
            }
            if backend == "jax":
                env.update(
                    JAX_COORDINATOR_ADDRESS=address,
                    JAX_NUM_PROCESSES=str(processes),
                    JAX_PROCESS_ID=str(index),
                    KERAS_BACKEND="jax",
                )
            else:
                env.update(
                    TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
                    KERAS_BACKEND="tensorflow",
                )
            output = None if index == 0 else open(logs / f"process-{index}.log", "w", encoding="utf-8")
            children.append(
                subprocess.Popen(
                    command,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT if output else None,
                    start_new_session=index > 0,
                )
            )  # Ctrl-C reaches them through us
            if output:
                output.close()
        try:
            failed = _watch(children)
        except KeyboardInterrupt:
            for child in children:
                _signal(child, signal.SIGINT)
            _end(children, STOP_GRACE_SECONDS)
            typer.secho(
                "interrupted. Run the same command again to continue from the last checkpoint.", err=True, fg="yellow"
            )
            raise typer.Exit(130) from None
        if failed is not None:
            index, code = failed
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"stopped with exit code {code}"
            where = "" if index == 0 else f" (its log: {logs / f'process-{index}.log'})"
            latest = _latest_checkpoint(run.checkpoint_dir)
            resume = f"from {latest}" if latest else "from the start (no checkpoint was written)"
            raise LlmtuiError(
                f"process {index} of {processes} {how}{where}; the other processes were stopped",
                hint=f"run the same command again to resume {resume}",
            )


def _watch(children: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait for every process; on the first failure, stop the rest and return (index, exit code)."""
    while True:
        codes = [child.poll() for child in children]
        failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            for other in children:
                if other.poll() is None:
                    _signal(other, signal.SIGTERM)
            _end(children, FAILED_GRACE_SECONDS)
            # A process killed by a signal is the cause; the others then fail on the broken collective.
            return min(failed, key=lambda item: (item[1] >= 0, item[0]))
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _signal(child: subprocess.Popen, which: int) -> None:
    try:
        child.send_signal(which)
    except ProcessLookupError:
        pass


def _end(children: list[subprocess.Popen], grace: float) -> None:
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(count: int) -> list[int]:
    """`count` different free ports (each socket held until all are chosen)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _latest_checkpoint(folder: Path) -> Path | None:
    steps = sorted(p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    return steps[-1] if steps else None

"""Hyperparameter search with Optuna: every trial is a real pipeline run in `runs/<name>/trials/trial_NNN/`.

The run's data and tokenizer stages run once, in the run folder itself. Each trial folder then receives
hard links (copies where links are impossible) of `data/` and `tokenizer/` and their manifest entries, so the
trial's own pipeline finds matching fingerprints and skips those stages (the `StageSkipped` events say so).
The study lives in `runs/<name>/study.db` (SQLite): a killed search continues with the trials it has. With
`--storage`, one study is shared by processes on several machines (PostgreSQL or MySQL through SQLAlchemy, or
Optuna's journal file on a shared filesystem).

How several processes split the work without running a trial twice or losing one: whoever creates the study
(or resumes it while holding the run folder's lock) queues the trials that remain to be run, as WAITING trials
(grid points with their values, other methods with none, so the sampler proposes them). Every worker then
claims queued trials one at a time; a claim is one atomic state change in the storage (a row lock in a
database, the log's order in a journal), so a trial has exactly one owner, and a worker stops when the queue
is empty. In a database, running trials send heartbeats: a trial whose worker died is failed after
`GRACE_SECONDS` by whichever worker looks next, and queued again with the same values.
"""

from __future__ import annotations

import copy
import fcntl
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.config.loader import recipe_from_dict, recipe_to_dict, save_recipe
from llmtui.config.recipe import Recipe
from llmtui.errors import LlmtuiError, RecipeError, RunFolderError
from llmtui.events import Event, Metrics, TrainingStarted
from llmtui.runfolder import RunFolder, fingerprint
from llmtui.tuning.space import Param, apply_values, grid_points, search_space

SHARED_STAGES = ("data", "tokenizer")
BEST_RECIPE = "best_recipe.toml"
# Present in the run folder: the search stops (the running trial at its next step, queued again for a resume).
# The wizard's Stop writes it; a signal could land anywhere in a trial's setup, this is read at known points.
STOP_FILE = "tune.stop"
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 90  # a running trial silent this long belongs to a dead worker
PLAN_WAIT_SECONDS = 120  # how long a joining worker waits for the study's creator to queue its trials


@dataclass
class TuneResult:
    """What a finished search reports: trials sorted best first, importances, the best recipe's path."""

    run_dir: Path
    trials: list[dict] = field(default_factory=list)
    importances: dict[str, float] = field(default_factory=dict)
    best: dict | None = None
    best_recipe: Path | None = None


class PruningSink:
    """Reports each validation evaluation to the Optuna trial and stops the trial when the pruner says so.

    `optuna.TrialPruned` travels out of the training loop and the pipeline unchanged (both only clean up on
    the way), and Optuna records the trial as pruned.
    """

    def __init__(self, trial, objective: str):
        self.trial = trial
        # Pruning compares evaluations during training, in the objective's direction: task objectives (higher is
        # better) are followed through the validation accuracy, the others through loss or perplexity.
        self.metric = {"perplexity": "perplexity", "val_loss": "loss", "bits_per_byte": "loss"}.get(
            objective, "accuracy"
        )
        self.last: float | None = None
        self.last_step = 0

    def __call__(self, event: Event) -> None:
        if not isinstance(event, Metrics) or event.split != "val":
            return
        value = float(event.values[self.metric])
        self.last, self.last_step = value, event.step
        self.trial.report(value, event.step)
        self.trial.set_user_attr("step", event.step)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at step {event.step}: validation {self.metric} {value:.4f}")


class TimeBudget:
    """`tune.seconds`: training stops at the first validation evaluation after this much training time."""

    def __init__(self, seconds: float, pruning: PruningSink):
        self.seconds = seconds
        self.pruning = pruning
        self.started: float | None = None
        self.evaluated_after = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrainingStarted) and self.started is None:
            self.started = time.perf_counter()
        elif isinstance(event, Metrics) and event.split == "val" and self._over():
            self.evaluated_after = True

    def _over(self) -> bool:
        return bool(self.seconds) and self.started is not None and time.perf_counter() - self.started > self.seconds

    def spent(self) -> bool:
        return self.evaluated_after and self.pruning.last is not None


def study_paths(recipe: Recipe, base_dir: Path) -> tuple[Path, str]:
    """The run folder and the default storage URL (SQLite in the run folder)."""
    root = RunFolder.of_recipe(recipe, base_dir).root.resolve()
    return root, f"sqlite:///{root / 'study.db'}"


class Tuner:
    """Runs a recipe's `[tune]` search in its run folder."""

    def __init__(
        self,
        recipe: Recipe,
        base_dir: Path | str = ".",
        storage: str | None = None,
        where: str = "recipe",
        worker_index: int = 0,
    ):
        self.recipe = recipe
        self.worker_index = worker_index  # each worker process samples with its own seed
        self.base_dir = Path(base_dir)
        self.params: list[Param] = search_space(recipe, where)  # every input error before any trial
        self.root, default_storage = study_paths(recipe, self.base_dir)
        self.storage_url = storage or default_storage
        self.local_storage = storage is None
        self.study_name = f"llmtui-{recipe.run.name}"
        self.trials_dir = self.root / "trials"
        self.created = False  # set by study(): this process created the study (and so plans its trials)
        self._storage = None

    def storage(self):
        """The opened study storage (opened once: a bad URL or an unreachable server fails before any work)."""
        if self._storage is None:
            self._storage = open_storage(self.storage_url)
        return self._storage

    # Setup ------------------------------------------------------------------------------------
    def prepare(self, sinks: list[Callable[[Event], None]] | None = None) -> None:
        """Build the data and tokenizer once, in the run folder (skipped when already built)."""
        from llmtui.pipeline import pipeline_for

        pipeline_for(self.recipe, self.base_dir, sinks).execute(until="tokenizer")

    def space_fingerprint(self) -> str:
        tune = self.recipe.tune
        return fingerprint(
            tune.method,
            tune.objective,
            tune.direction,
            tune.steps,
            tune.seconds,
            {k: v.model_dump(mode="json") for k, v in tune.space.items()},
            self.recipe.model_dump(mode="json", exclude={"tune", "run"}),
            self.recipe.run.seed,
        )

    def study(self):
        """Create or load the study; refuse one made for another search. `self.created` says whether this
        process created it (then it plans the trials: see the module's docstring)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        tune = self.recipe.tune
        if self.local_storage:
            self.root.mkdir(parents=True, exist_ok=True)
        options = dict(
            storage=self.storage(),
            study_name=self.study_name,
            direction=tune.direction,
            sampler=self._sampler(),
            pruner=self._pruner(),
        )
        try:
            try:  # creation is atomic in every storage: exactly one process learns that it created the study
                study, self.created = optuna.create_study(**options), True
            except optuna.exceptions.DuplicatedStudyError:
                study, self.created = optuna.create_study(**options, load_if_exists=True), False
        except Exception as exc:  # SQLAlchemy's errors (server gone, tables of another Optuna version)
            raise LlmtuiError(
                f"cannot open the study storage {self.storage_url}: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        if study.trials:  # a resumed study: a sampler seeded as before would propose the same values again
            study.sampler = self._sampler(resumed_at=len(study.trials))
        made_for = study.user_attrs.get("search")
        if made_for is None:
            study.set_user_attr("search", self.space_fingerprint())
        elif made_for != self.space_fingerprint():
            raise RecipeError(
                f"the study {self.study_name} in {self.storage_url} was made for another recipe or [tune] section",
                hint="give the run another name (--set run.name=...), or delete study.db to start over",
            )
        return study

    def _sampler(self, resumed_at: int = 0):
        import optuna

        tune = self.recipe.tune
        seed = tune.seed + 1000 * self.worker_index + resumed_at
        if tune.method in ("grid", "random"):  # grid points are queued with their values (see plan)
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, tune.trials // 3)))

    def _pruner(self):
        import optuna

        tune = self.recipe.tune
        if tune.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=0)
        if tune.pruner == "halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.NopPruner()

    # Trials -----------------------------------------------------------------------------------
    def trial_recipe(self, values: dict[str, Any], number: int) -> Recipe:
        recipe = apply_values(self.recipe, values, where=f"trial {number}")
        data = recipe_to_dict(recipe)
        data["run"].update(name=f"trial_{number:03d}", out_dir=str(self.trials_dir))
        if recipe.finetune.base:  # trials live elsewhere: name the base run by its folder
            from llmtui.finetune.pipeline import base_run_folder

            data["finetune"]["base"] = str(base_run_folder(recipe, self.base_dir).root.resolve())
        if self.recipe.tune.steps:
            data["train"]["steps"] = self.recipe.tune.steps
        return recipe_from_dict(data, where=f"trial {number}")

    def best_recipe(self, values: dict[str, Any]) -> Recipe:
        """The run's recipe with the best trial's values: `llmtui run` on it trains in the run folder itself,
        reusing the data and tokenizer built there."""
        recipe = apply_values(self.recipe, values, where="best recipe")
        if self.recipe.tune.steps:
            recipe = apply_values(recipe, {"train.steps": self.recipe.tune.steps}, where="best recipe")
        return recipe

    def share_artifacts(self, trial_root: Path) -> None:
        share_artifacts(self.root, trial_root)

    def objective(self, trial) -> float:
        """One trial: a real training run in its own folder, evaluated on the validation split."""
        from llmtui.pipeline import pipeline_for
        from llmtui.runcontrol import StopWhen

        tune = self.recipe.tune
        values = {p.path: p.suggest(trial, tune.method == "grid") for p in self.params}
        trial_root = self.trials_dir / f"trial_{trial.number:03d}"
        trial.set_user_attr("folder", str(trial_root))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine and process ran it
        try:
            recipe = self.trial_recipe(values, trial.number)
        except RecipeError as exc:  # a combination the recipe rejects (e.g. dim not a multiple of heads)
            trial.set_user_attr("error", str(exc))
            return math.nan
        self.share_artifacts(trial_root)
        pruning = PruningSink(trial, tune.objective)
        budget = TimeBudget(tune.seconds, pruning)
        control = StopWhen(lambda: (bool(tune.seconds) and budget.spent()) or self.stop_requested())
        pipeline = pipeline_for(recipe, self.base_dir, [pruning, budget], control)
        started = time.perf_counter()
        try:
            summary = pipeline.execute(until="eval")
            value = objective_value(summary, tune.objective)
        except _interrupted():
            if not budget.spent():  # Ctrl-C: the search stops; its next run tries these values first
                trial.set_user_attr("error", "interrupted")
                trial.study.enqueue_trial(values)
                raise
            trial.set_user_attr("stopped", f"time budget at step {pruning.last_step}")
            if pruning.last is None:  # stopped before its first validation: nothing to rank it by
                return math.nan
            value = pruning.last if tune.objective != "bits_per_byte" else self._bits_per_byte(pruning.last)
        except LlmtuiError as exc:  # e.g. NaN loss: this trial failed, the search goes on
            trial.set_user_attr("error", str(exc))
            return math.nan
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
            self._write_hparams(trial, values, pruning)
        return float(value)

    def _bits_per_byte(self, loss: float) -> float:
        return loss / math.log(2) / RunFolder(self.root).token_meta().bytes_per_token

    def _write_hparams(self, trial, values: dict, pruning: PruningSink) -> None:
        from llmtui.training.tensorboard import ScalarWriter

        writer = ScalarWriter(RunFolder(self.trials_dir / f"trial_{trial.number:03d}").scalar_log_dir("hparams"))
        try:
            writer.hparams(dict(values), trial_id=f"trial_{trial.number:03d}")
            if pruning.last is not None:
                writer.scalar(f"tune/last_eval_{pruning.metric}", pruning.last, pruning.last_step)
        finally:
            writer.close()

    def write_objective(self, trial) -> None:
        """The finished trial's objective as a scalar beside its hparams (the HParams dashboard's metric)."""
        from llmtui.training.tensorboard import ScalarWriter

        if trial.value is None or not math.isfinite(trial.value):
            return
        writer = ScalarWriter(RunFolder(self.trials_dir / f"trial_{trial.number:03d}").scalar_log_dir("hparams"))
        try:
            writer.scalar(f"tune/{self.recipe.tune.objective}", trial.value, 0)
        finally:
            writer.close()

    # The search -------------------------------------------------------------------------------
    def remaining_trials(self, study) -> int:
        """Trials queued and not yet claimed by a worker."""
        from optuna.trial import TrialState

        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def plan(self, study) -> int:
        """Queue the trials still to run so that the study ends with `tune.trials` of them: finished and running
        ones count, failed ones do not (a resumed search runs their number again). Only the study's creator, or
        a process holding the run folder's lock on local storage, plans; everyone else waits for the plan."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        counted = [
            t
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        ]
        missing = max(0, self.recipe.tune.trials - len(counted))
        if self.recipe.tune.method == "grid":
            taken = {json.dumps(t.params, sort_keys=True) for t in counted}
            points = [p for p in grid_points(self.params) if json.dumps(p, sort_keys=True) not in taken]
            queue = points[:missing]
        else:
            queue = [{}] * missing  # the sampler proposes the values when a worker claims the trial
        for values in queue:
            study.enqueue_trial(values, skip_if_exists=False)
        study.set_user_attr("planned", self.recipe.tune.trials)
        return len(queue)

    def wait_for_plan(self, study) -> None:
        """A worker joining a study another process created waits until its trials are queued."""
        deadline = time.monotonic() + PLAN_WAIT_SECONDS
        while "planned" not in study.user_attrs:
            if time.monotonic() > deadline:
                raise LlmtuiError(
                    f"the study {self.study_name} in {self.storage_url} has no planned trials "
                    f"after {PLAN_WAIT_SECONDS} s",
                    hint="the process that created it stopped before queueing them; run llmtui tune "
                    "with this storage once more",
                )
            time.sleep(1.0)

    def optimize(self, study) -> int:
        """Claim queued trials and run them in this process until the queue is empty; returns how many ran."""
        ran = 0
        while True:
            if _heartbeats(study):
                import warnings

                import optuna

                with warnings.catch_warnings():  # Optuna marks this function experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and queued again
            if self.stop_requested():  # the wizard's Stop: no new trial
                return ran
            trial = claim_trial(study)
            if trial is None:
                return ran
            self.run_trial(study, trial)
            ran += 1

    def run_trial(self, study, trial) -> None:
        """One claimed trial to its end in the storage: complete, pruned or failed (and failed on the way out of
        an exception, which then travels on)."""
        import optuna
        from optuna.trial import TrialState

        with Heartbeat(study, trial):
            try:
                value = self.objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
                return
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
        if math.isfinite(value):
            self.write_objective(study.tell(trial, value))
        else:
            study.tell(trial, state=TrialState.FAIL)

    def fail_stale_trials(self, study) -> int:
        """Trials left RUNNING by a killed search are marked failed and queued again with their values (only safe
        while this process holds the search lock on local storage: nothing else can be running them)."""
        from optuna.trial import TrialState

        stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        for t in stale:
            study._storage.set_trial_user_attr(t._trial_id, "error", "interrupted (the search was stopped)")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
        return len(stale)

    def stop_requested(self) -> bool:
        return (self.root / STOP_FILE).exists()

    def lock(self):
        """Hold `runs/<name>/tune.lock` for the whole search: one search per run folder on this machine."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "tune.lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunFolderError(
                f"a search is already running in {self.root}",
                hint="wait for it, or add workers to it with --storage from another machine",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")  # who to interrupt, for the wizard following the search
        handle.flush()
        return handle

    def run(
        self, workers: int = 1, on_prepared: Callable[[Any], None] | None = None, prepare_sinks: list | None = None
    ) -> TuneResult:
        """Prepare shared artifacts, then run the remaining trials in `workers` processes (1 = this one)."""
        handle = self.lock()
        try:
            (self.root / STOP_FILE).unlink(missing_ok=True)  # a stop asked of an earlier search
            self.storage()
            self.prepare(prepare_sinks)
            study = self.study()
            if self.local_storage:
                self.fail_stale_trials(study)
            if self.local_storage or self.created:
                self.plan(study)
            else:
                self.wait_for_plan(study)
            remaining = self.remaining_trials(study)
            if on_prepared is not None:
                on_prepared(study)
            if workers <= 1 or remaining <= 1:
                self.optimize(study)
            else:
                run_workers(self, min(workers, remaining))
            if self.stop_requested() and self.remaining_trials(study):
                raise _interrupted()(0, None)
            return self.result(study)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def result(self, study) -> TuneResult:
        from optuna.trial import TrialState

        result = TuneResult(run_dir=self.root)
        rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
        sign = 1 if self.recipe.tune.direction == "minimize" else -1
        result.trials = sorted(rows, key=lambda r: (r["value"] is None, sign * (r["value"] or 0.0), r["number"]))
        complete = [
            t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]
        if not complete:
            return result
        best = min(complete, key=lambda t: sign * t.value)
        result.best = trial_row(best)
        path = self.root / BEST_RECIPE
        save_recipe(self.best_recipe(best.params), path)
        result.best_recipe = path
        if len(complete) >= 2 and len(self.params) >= 1:
            try:
                import optuna

                result.importances = dict(optuna.importance.get_param_importances(study))
            except (RuntimeError, ValueError):
                result.importances = {}  # e.g. every trial had the same values
        return result


def _interrupted():
    """The trainer's stop exception (light: defined in llmtui.errors)."""
    from llmtui.errors import TrainingInterrupted

    return TrainingInterrupted


def trial_row(trial) -> dict:
    """One trial for tables and reports."""
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.datetime_start is not None:
        end = trial.datetime_complete or __import__("datetime").datetime.now()
        seconds = (end - trial.datetime_start).total_seconds()
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    intermediate = trial.intermediate_values
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": dict(trial.params),
        "value": value,
        "step": trial.user_attrs.get("step", max(intermediate) if intermediate else None),
        "last_intermediate": intermediate[max(intermediate)] if intermediate else None,
        "seconds": seconds,
        "error": trial.user_attrs.get("error"),
        "folder": trial.user_attrs.get("folder"),
        "worker": trial.user_attrs.get("worker"),
    }


def objective_value(summary: dict, objective: str) -> float:
    """The objective from a run's summary: a language-model metric, or a fine-tuned task's."""
    if objective in summary and objective != "task":
        return summary[objective]
    task = summary.get("task") or {}
    if objective not in task:
        raise RecipeError(
            f"tune.objective = '{objective}' is not among this run's results"
            + (f" (a {task['kind']} task)" if task else " (a language model)"),
            hint="language models: val_loss, perplexity, bits_per_byte; classification: accuracy, "
            "macro_f1; qa: f1, exact_match; translation: bleu, chrf",
        )
    return task[objective]


def share_artifacts(run_root: Path, trial_root: Path) -> None:
    """Link a run's data and tokenizer into a trial folder, with their manifest entries: the trial's pipeline
    then finds the same fingerprints and skips those stages."""
    manifest = RunFolder(run_root).read_manifest()
    missing = [s for s in SHARED_STAGES if s not in manifest["stages"]]
    if missing:
        raise RunFolderError(
            f"{run_root} has no {' or '.join(missing)} stage to share with the trials",
            hint="they are prepared first; run the command again",
        )
    trial = RunFolder(trial_root)
    trial_root.mkdir(parents=True, exist_ok=True)
    trial_manifest = trial.read_manifest()
    for stage in SHARED_STAGES:
        source, target = run_root / stage, trial_root / stage
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, copy_function=_link_or_copy)
        entry = copy.deepcopy(manifest["stages"][stage])  # its outputs are relative to the folder
        entry["shared_from"] = str(source)
        trial_manifest["stages"][stage] = entry
    trial.write_manifest(trial_manifest)


def _link_or_copy(source: str, target: str) -> str:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


# Several processes ------------------------------------------------------------------------------
def run_workers(tuner: Tuner, workers: int) -> None:
    """Trials in `workers` fresh processes sharing the study's storage (spawned: TensorFlow does not fork); each
    claims queued trials until none is left."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    recipe = recipe_to_dict(tuner.recipe)
    storage = None if tuner.local_storage else tuner.storage_url
    processes = [
        context.Process(
            target=_worker, args=(recipe, str(tuner.base_dir.resolve()), storage, i + 1), name=f"llmtui-tune-{i}"
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
            process.join()
        raise
    failed = [p.name for p in processes if p.exitcode not in (0, None)]
    if failed:
        raise LlmtuiError(
            f"{len(failed)} of {len(processes)} tuning workers stopped with an error",
            hint=f"see the trial folders' run.log under {tuner.trials_dir}",
        )


def _worker(recipe_data: dict, base_dir: str, storage: str | None, index: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tuner = Tuner(recipe_from_dict(recipe_data), base_dir, storage, worker_index=index)
    # TensorFlow's and absl's native messages go to the worker's log, not over the live table.
    log = os.open(tuner.root / f"tune-worker-{index}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    tuner.optimize(tuner.study())


# Storage ----------------------------------------------------------------------------------------
def open_storage(url: str):
    """The Optuna storage behind a `--storage` URL: a database through SQLAlchemy (sqlite:///, postgresql://,
    mysql://), with heartbeats so a dead worker's trial is run again, or `journal:PATH`, Optuna's append-only
    log file for a filesystem every machine mounts (NFS: no database server needed)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :].removeprefix("//")).expanduser()
        if not str(path) or str(path) == ".":
            raise LlmtuiError(f"the storage {url} names no file", hint="journal:/shared/folder/study.journal")
        if not path.parent.is_dir():
            raise LlmtuiError(
                f"the journal storage's folder {path.parent} does not exist",
                hint="create it on the shared filesystem first",
            )
        return JournalStorage(JournalFileBackend(str(path)))
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "mysql"):
        raise LlmtuiError(
            f"unknown study storage {url}",
            hint="sqlite:///path/study.db, postgresql://user:password@host/database, "
            "mysql://user:password@host/database or journal:/shared/folder/study.journal",
        )
    import warnings

    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
                )
        except ImportError as exc:
            raise LlmtuiError(
                f"cannot open the study storage {url}: the database driver is missing ({exc})",
                hint="pip install 'llmtui[postgres]' for PostgreSQL (psycopg); mysqlclient or pymysql for MySQL",
            ) from None
        except Exception as exc:  # SQLAlchemy's errors: bad URL, server unreachable, wrong password
            # Workers starting together on an empty database race to create Optuna's tables: the loser's
            # CREATE fails on a name the winner just took, and a second look finds the tables.
            if type(exc).__name__ in ("IntegrityError", "ProgrammingError") and attempt < 2:
                time.sleep(0.5 + attempt)
                continue
            raise LlmtuiError(
                f"cannot open the study storage {url}: {type(exc).__name__}: {_first_line(exc)}",
                hint="check that the server runs and that the URL's user, password and database exist",
            ) from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _heartbeats(study) -> bool:
    from optuna.storages import RDBStorage

    return isinstance(study._storage, RDBStorage) and study._storage.get_heartbeat_interval() is not None


def claim_trial(study):
    """Take the oldest queued trial of the study, or None when the queue is empty. The change from WAITING to
    RUNNING succeeds for exactly one process; the others move on to the next queued trial."""
    import optuna
    from optuna.trial import TrialState

    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class Heartbeat:
    """While a trial runs in a database storage, a thread records that its worker is alive."""

    def __init__(self, study, trial):
        import threading

        self.storage, self.trial_id = study._storage, trial._trial_id
        self.enabled = _heartbeats(study)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="llmtui-tune-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(HEARTBEAT_SECONDS):
                return

    def __enter__(self):
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.stop.set()
            self.thread.join()

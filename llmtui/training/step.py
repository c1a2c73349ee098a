"""One training micro-step, with as little host work between steps as the backend allows.

On TensorFlow this is `model.train_on_batch`. On JAX, `train_on_batch` reads every variable's value before
the compiled step and assigns every one after it, then waits for the loss: host time during which a GPU sits
idle (measured: bench/README.md, "Training step on JAX").

`TrainStep` on JAX keeps the state the compiled step returns and passes it straight to the next step; the
loss stays a device scalar until the caller reads it. The Keras variables are written only by `sync()`,
which the training loop calls before anything else reads or changes the model (metrics, checkpoints,
evaluation, samples, the end of training). After `sync()` the next step reads the variables afresh, so
whatever happened to the model in between (a restored checkpoint, a sampler's random state) is honoured.
"""

from __future__ import annotations

import keras
import numpy as np


class TrainStep:
    """Call with a batch `(x, y)` or `(x, y, sample_weight)`: runs one step and returns its loss.

    The loss is a Python float on TensorFlow and a device scalar on JAX (read it with `float()` when
    needed). Between a step and the next `sync()` the model's variables must not be used on JAX: their
    buffers were handed to the compiled step, which reuses them in place.
    """

    def __init__(self, model):
        self.model = model
        # Under a keras.distribution (JAX data parallel) the batch must be laid out over the devices the
        # way `train_on_batch` does it; that path keeps `train_on_batch`.
        self._holds_state = (
            keras.backend.backend() == "jax"
            and not model.run_eagerly
            and getattr(model, "steps_per_execution", 1) == 1
            and keras.distribution.distribution() is None
        )
        self._state = None  # (trainable, non_trainable, optimizer) values while the step holds them
        self._metric_zeros: list[np.ndarray] = []
        self._multi_worker = _MultiWorkerStep.for_model(model)

    def __call__(self, *batch):
        model = self.model
        if self._multi_worker is not None:
            return self._multi_worker(*batch)
        if not self._holds_state or model.train_function is None:
            # Also the first step: `train_on_batch` builds the metrics and compiles the step.
            return model.train_on_batch(*batch, return_dict=True)["loss"]
        if self._state is None:
            self._state = tuple([v.value for v in variables] for variables in self._variable_groups())
            self._metric_zeros = [np.zeros(v.shape, v.dtype) for v in model.metrics_variables]
        x, y, sample_weight = (tuple(batch) + (None,))[:3]
        # Zero metric state each step, as `train_on_batch` resets its metrics: the logged loss is this
        # step's, not a running mean. (Host arrays: the step copies them in, so donating them is harmless.)
        state = (*self._state, self._metric_zeros)
        logs, (trainable, non_trainable, optimizer, _) = model.train_function(state, iter([(x, y, sample_weight)]))
        self._state = (trainable, non_trainable, optimizer)
        return logs["loss"]

    def value(self, variable):
        """The current value of one of the model's or optimizer's variables (for `np.asarray`), without a
        `sync()`: the held value, or else the variable itself (under a TensorFlow distribution strategy its
        `.value` is a per-device container that NumPy cannot read)."""
        if self._state is not None:
            for variables, values in zip(self._variable_groups(), self._state):
                for candidate, value in zip(variables, values):
                    if candidate is variable:
                        return value
        return variable

    def sync(self) -> None:
        """Write the state the steps hold back into the model's variables (a no-op when there is none)."""
        if self._state is None:
            return
        for variables, values in zip(self._variable_groups(), self._state):
            for variable, value in zip(variables, values):
                variable.assign(value)
        self._state = None

    def _variable_groups(self):
        model = self.model
        return model.trainable_variables, model.non_trainable_variables, model.optimizer.variables


class _MultiWorkerStep:
    """Keras's own `train_step` run on TensorFlow's MultiWorkerMirroredStrategy, the loss reduced here.

    `train_on_batch` cannot run under that strategy in Keras 3 (3.15): its step function reduces the logs across
    workers with `strategy.reduce("MEAN", value, axis=0)` (keras/src/backend/tensorflow/trainer.py,
    `reduce_per_replica`, reduction "auto" hard-coded), which fails on the scalar loss ("Invalid reduction
    dimension 0 for input with 0 dimensions"); `model.fit` goes through the same function (keras-team/keras
    issue 20585). This runs the same `train_step` (loss scaling by 1/replicas, gradients summed across workers by
    the optimizer) in each replica and sums the replicas' losses, each the mean over its rows, into their mean.
    """

    def __init__(self, model, strategy):
        self.model, self.strategy = model, strategy
        self.replicas = strategy.num_replicas_in_sync
        self._function = None

    @classmethod
    def for_model(cls, model) -> _MultiWorkerStep | None:
        if keras.backend.backend() != "tensorflow":
            return None
        import tensorflow as tf

        strategy = model.distribute_strategy
        if (
            isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()
        ):
            return cls(model, strategy)
        return None

    def __call__(self, *batch):
        import tensorflow as tf

        model = self.model
        data = (tuple(batch) + (None, None))[:3]
        if self._function is None:
            # What `train_on_batch` does first: build the metrics and the loss outside the replicas.
            model._maybe_symbolic_build(data_batch=data)
            strategy = self.strategy

            @tf.function
            def step(data):
                logs = strategy.run(model.train_step, args=(data,))
                return strategy.reduce("SUM", logs["loss"], axis=None)

            self._function = step
        model.reset_metrics()  # the logged loss is this step's, as with `train_on_batch`
        return float(self._function(data)) / self.replicas

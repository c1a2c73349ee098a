"""The fused GPU kernels `bench_gpu.py` measures (bench/gpu_kernels.py), run in Pallas' interpreter on the CPU:
they must compute what the engine computes before their timings mean anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_kernels():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_kernels
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return gpu_kernels


def _reference(logits: np.ndarray, targets: np.ndarray, upstream: np.ndarray):
    """-log softmax(logits)[target] and its gradient times `upstream`, in float64."""
    wide = logits.astype(np.float64)
    peak = wide.max(-1, keepdims=True)
    lse = peak[..., 0] + np.log(np.exp(wide - peak).sum(-1))
    nll = lse - np.take_along_axis(wide, targets[..., None], -1)[..., 0]
    grad = np.exp(wide - lse[..., None])
    np.put_along_axis(grad, targets[..., None], np.take_along_axis(grad, targets[..., None], -1) - 1.0, -1)
    return nll, grad * upstream[..., None]


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 1e-2)])
def test_fused_next_token_loss_matches_the_loss_and_its_gradient(gpu_kernels, dtype, tolerance):
    """A row longer than one block (5000 > 4096, the last block masked), large logits (a naive exp
    overflows), targets in either block and at the row's ends."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    width = 5000
    logits = (rng.normal(size=(2, 3, width)) * 30).astype(np.float32)
    logits[0, 0, 4999] = 200.0  # the maximum in the masked last block
    targets = np.array([[4999, 0, 4100], [17, 4095, 4096]], dtype=np.int32)
    upstream = rng.uniform(0.5, 2.0, size=(2, 3)).astype(np.float32)
    x = jnp.asarray(logits, dtype)

    def weighted(x):
        return (gpu_kernels.fused_next_token_nll(jnp.asarray(targets), x, interpret=True) * upstream).sum()

    value = gpu_kernels.fused_next_token_nll(jnp.asarray(targets)[..., None], x, interpret=True)  # (B, T, 1) too
    grad = jax.grad(weighted)(x)
    want_value, want_grad = _reference(np.asarray(x.astype(jnp.float32)), targets, upstream)
    assert value.dtype == jnp.float32 and grad.dtype == x.dtype
    np.testing.assert_allclose(np.asarray(value), want_value, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(np.asarray(grad.astype(jnp.float32)), want_grad, atol=tolerance)


@pytest.mark.slow
def test_bench_gpu_smoke_runs_the_fused_kernel_variant():
    """The whole benchmark with both fused kernels on a tiny model (interpreted): trains, finite loss."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "smoke.json"
        command = [sys.executable, "bench/bench_gpu.py", "--smoke", "--no-bias", "--pallas-layer-norm"]
        command += ["--pallas-loss", "--batches", "2", "--out", str(out)]
        done = subprocess.run(
            command, cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(out.read_text())
    assert result["config"]["layer_norm"] == "pallas" and result["config"]["loss_kernels"] == "pallas"
    (run,) = result["runs"]
    assert np.isfinite(run["loss_last"]) and run["loss_last"] < run["loss_first"] + 0.1

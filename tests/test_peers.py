"""The peers' benchmark figures beside the architecture ladder's rungs (issue 18)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from llmtui.config import load_recipe, recipe_from_dict
from llmtui.pipeline import Pipeline
from llmtui.runfolder import SplitTokens, TokenMeta
from llmtui.tuning.peers import NANOGPT_BABY, PeerReference, reference_for
from tests.test_tuning import tune_dict

ROOT = Path(__file__).resolve().parents[1]


def test_ladder_reports_the_peer_beside_a_rung_that_is_a_benchmarked_configuration(tmp_path):
    from llmtui.tuning.ladder import peer_lines, run_ladder

    data = tune_dict(tmp_path, name="ladder")
    data["train"]["steps"] = 5
    recipe = recipe_from_dict(data)
    Pipeline(recipe, tmp_path).execute(until="tokenizer")
    meta = json.loads((tmp_path / "runs" / "ladder" / "tokenizer" / "tokens.json").read_text(encoding="utf-8"))
    settings = {
        "model.dim": recipe.model.dim,
        "model.layers": recipe.model.layers,
        "train.steps": 5,
        "train.lr": recipe.train.lr,
        "tokenizer.kind": "char",
    }
    tokens = {"train": meta["train"]["tokens"], "val": meta["val"]["tokens"]}
    other_split = PeerReference(
        "another split", "peer A", ("gpt",), settings, {**tokens, "val": tokens["val"] + 1}, (1.0,)
    )
    tiny = PeerReference(
        "the tiny benchmark",
        "peer B",
        ("gpt",),
        settings,
        tokens,
        (3.0, 3.2, 3.1),
        {"gpt": (3.05, 3.07)},
        "python bench/tiny.py",
    )

    report = run_ladder(recipe, tmp_path, archs=("gpt",), references=(other_split, tiny))

    rung = report["rungs"][0]
    assert rung["peer"]["name"] == "the tiny benchmark" and rung["peer"]["peer"] == "peer B"
    assert rung["peer"]["peer_val_loss"] == {"median": 3.1, "min": 3.0, "max": 3.2, "seeds": 3}
    assert rung["peer"]["llmtui_val_loss"]["median"] == 3.06
    assert rung["peer"]["this_rung_minus_peer"] == round(rung["val_loss"] - 3.1, 4)
    on_disk = json.loads((tmp_path / "runs" / "ladder" / "ladder" / "report.json").read_text(encoding="utf-8"))
    assert on_disk["rungs"][0]["peer"] == rung["peer"]
    (line,) = peer_lines(report)
    assert line.startswith(
        "gpt is the tiny benchmark at 5 steps: peer B validation loss 3.1000 (3.0000-3.2000, "
        "3 seeds), llmtui's gpt 3.0600 (3.0500-3.0700, 2 seeds); this rung "
    )
    assert line.endswith("[python bench/tiny.py]")


def test_the_nanogpt_reference_is_the_benchmarked_recipe_with_its_figures():
    """The built-in reference matches recipes/nanogpt-baby.toml (what bench_quality_gpt.py runs) on the
    benchmark's split, and carries its figures."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_quality_gpt import recipe_dict
    finally:
        sys.path.remove(str(ROOT / "bench"))
    results = json.loads((ROOT / "bench" / "results" / "quality.json").read_text(encoding="utf-8"))["transformers"]
    runs = results["llmtui"]["gpt"]["matched"]
    counts = next(iter(runs.values()))["tokens"]
    meta = TokenMeta(0, "char", SplitTokens(counts["train"], 0, "uint16"), SplitTokens(counts["val"], 0, "uint16"))
    for arch in ("gpt", "llama"):
        shipped = load_recipe(ROOT / "recipes" / "nanogpt-baby.toml", [f"model.arch={arch}"])
        assert reference_for(shipped, meta) is NANOGPT_BABY
        assert reference_for(recipe_from_dict(recipe_dict(arch, 2000, 1, "matched")), meta) is NANOGPT_BABY
        mine = sorted(r["val_loss"] for r in results["llmtui"][arch]["matched"].values())
        assert sorted(NANOGPT_BABY.llmtui_val_losses[arch]) == pytest.approx(mine, abs=5e-5)
    nanogpt = sorted(r["val_loss"] for r in results["nanogpt"].values())
    assert sorted(NANOGPT_BABY.peer_val_losses) == pytest.approx(nanogpt, abs=5e-5)
    # One setting, the architecture or the split different: not the benchmarked configuration.
    assert reference_for(recipe_from_dict(recipe_dict("gpt", 2000, 1, "beta2_0.95")), meta) is None
    assert reference_for(recipe_from_dict(recipe_dict("gpt", 2000, 1, "gpt2_biases")), meta) is None
    # model.bias is a gpt setting: a llama rung is the benchmarked llama whatever it says
    assert reference_for(recipe_from_dict(recipe_dict("llama", 2000, 1, "gpt2_biases")), meta) is NANOGPT_BABY
    assert reference_for(recipe_from_dict(recipe_dict("gpt", 1000, 1, "matched")), meta) is None
    assert (
        reference_for(
            recipe_from_dict(
                {**recipe_dict("gpt", 2000, 1, "matched"), "model": {"arch": "lstm", "dim": 128, "context": 64}}
            ),
            meta,
        )
        is None
    )
    assert (
        reference_for(
            recipe_from_dict(recipe_dict("gpt", 2000, 1, "matched")),
            replace(meta, val=SplitTokens(counts["val"] - 1, 0, "uint16")),
        )
        is None
    )

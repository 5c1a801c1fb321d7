"""docs/python.md runs as written: its Python blocks executed in order in one namespace (what a
notebook would do), from the repository's root; and the registry's rules for a redefined learner."""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

from smac_jax.errors import WorkdirError
from smac_jax.learners import REGISTRY, register
from smac_jax.training import pipeline
from smac_jax.learners.sac import SAC

DOC = os.path.join(REPO_ROOT, "docs", "python.md")


def python_blocks(path: str) -> list[str]:
    with open(path) as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)


def test_python_page_runs(monkeypatch, capsys):
    blocks = python_blocks(DOC)
    assert len(blocks) >= 6
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.syspath_prepend(REPO_ROOT)
    monkeypatch.setenv("MINARI_DATASETS_PATH", os.environ.get("MINARI_DATASETS_PATH", ""))  # restored after
    ns: dict = {"__name__": "__docs_python__"}
    try:
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"docs/python.md block {i + 1}", "exec"), ns)
            except Exception as e:  # name the block that failed
                pytest.fail(f"docs/python.md block {i + 1} raised {type(e).__name__}: {e}")
        out = capsys.readouterr().out
        run_dir = os.path.join(ns["workdir"], "run")
        before = open(os.path.join(run_dir, "metrics.jsonl")).read()
        with pytest.raises(WorkdirError, match="resume|overwrite"):  # what the page says a second run does
            pipeline.run(ns["config"], run_dir, progress=False)
        assert open(os.path.join(run_dir, "metrics.jsonl")).read() == before
    finally:
        for name in ("sac_huber", "smac_cos"):  # other tests iterate over every registered learner
            REGISTRY.pop(name, None)
        sys.modules.pop("configs.o2o", None)
    # what the page's comments say the cells print
    assert "(1000, 3) (1000, 1)" in out
    assert "['actor', 'critic', 'log_temp', 'target_critic']" in out
    assert "(2, 64) (64, 1)" in out
    assert "0.0001 (32, 32)" in out  # another setting is another learner
    assert "['grad_q_norm', 'grad_q_score_cos', 'sm_loss']" in out
    cos_state, cos_metrics = ns["cos_state"], ns["cos_metrics"]  # the SMAC variant took a finite step
    assert int(cos_state.step) == 1 and np.isfinite(float(cos_metrics["sm_loss"]))
    assert "[200 200]" in out and "(2, 5, 1)" in out
    # the first setting's lanes are the seeds trained alone; the handed-over TD3 policy acts as the SAC policy
    assert "(4,)" in out and out.splitlines().count("True") == 2
    summary = ns["summary"]
    assert summary["offline_learner"] == "sac_huber" and summary["online_learner"] == "sac"
    assert len(summary["offline_final"]) == 2 and len(summary["transfer_drop"]) == 2
    assert "transfer_drop_warning" not in summary
    assert {"summary.json", "eval.png", "metrics.jsonl"} <= set(os.listdir(run_dir))


def test_register_redefinition_replaces_and_clash_errors():
    try:
        def define():
            @register("doc_test_variant")
            class Variant(SAC):
                pass
            return Variant

        first, second = define(), define()  # the same class defined twice (a cell run again)
        assert first is not second and REGISTRY["doc_test_variant"] is second

        with pytest.raises(ValueError, match="'doc_test_variant' is taken by .*Variant; .*Other needs another name"):
            @register("doc_test_variant")
            class Other(SAC):
                pass
        assert REGISTRY["doc_test_variant"] is second
    finally:
        REGISTRY.pop("doc_test_variant", None)

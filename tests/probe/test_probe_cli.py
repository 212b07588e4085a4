"""``klaudit probe FILE.py::FUNCTION``: output, exit codes, and a clear error without torch."""
import json
import os
import sys

import pytest
from click.testing import CliRunner

from conftest import FIXTURES

from klaudit.cli import main

TEXTBOOK = os.path.join(FIXTURES, "textbook")


def run(*args):
    return CliRunner().invoke(main, ["probe", *args])


def test_help_says_it_imports_and_runs_the_file():
    r = run("--help")
    assert r.exit_code == 0
    assert "IMPORTS AND RUNS" in r.output


def test_missing_torch_is_one_line_and_exit_2(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    r = run(os.path.join(TEXTBOOK, "k2_as_loss.py") + "::k2_pow_loss")
    assert r.exit_code == 2
    assert "needs torch" in r.output and len(r.output.strip().splitlines()) == 1


def test_principled_exits_0_and_not_principled_exits_1():
    pytest.importorskip("torch")
    ok = run(os.path.join(TEXTBOOK, "k2_as_loss.py") + "::k2_pow_loss")
    assert ok.exit_code == 0, ok.output
    assert "behaves like k2 as loss" in ok.output and "principled: yes" in ok.output
    assert "bound: mask=ones" in ok.output
    bad = run(os.path.join(TEXTBOOK, "k3_as_loss.py") + "::k3_grpo", "--policy", "per_token_logps",
              "--reference", "ref_per_token_logps")
    assert bad.exit_code == 1, bad.output
    assert "k3 as loss" in bad.output


def test_json_output_and_bindings():
    pytest.importorskip("torch")
    r = run(os.path.join(TEXTBOOK, "k1_in_reward.py") + "::compute_rewards", "--policy", "logprobs",
            "--reference", "ref_logprobs", "--json", "--bind", "scores=0")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["report"]["family"] == "k1_reward" and doc["report"]["principled"] is True
    assert doc["bindings"]["scores"] == "0"
    for key in ("family", "coefficient", "principled", "scale", "residual", "max_rel_deviation"):
        assert key in doc["report"]


def test_model_sources_from_the_command_line():
    pytest.importorskip("torch")
    r = run(os.path.join(TEXTBOOK, "full_kl.py") + "::full_reverse_kl", "--policy", "model:policy_model",
            "--reference", "model:ref_model")
    assert r.exit_code == 0, r.output
    assert "exact full-vocabulary reverse KL" in r.output


def test_errors_exit_2(tmp_path):
    pytest.importorskip("torch")
    assert run("no_such_file.py::f").exit_code == 2
    assert run(os.path.join(TEXTBOOK, "k2_as_loss.py")).exit_code == 2  # no ::FUNCTION
    assert run(os.path.join(TEXTBOOK, "k2_as_loss.py") + "::nope").exit_code == 2
    odd = tmp_path / "odd.py"
    odd.write_text("def f(logp, ref_logp, mystery):\n    return (logp - ref_logp).sum()\n")
    r = run(f"{odd}::f")
    assert r.exit_code == 2 and "mystery" in r.output
    boom = tmp_path / "boom.py"
    boom.write_text("raise RuntimeError('at import')\n")
    r = run(f"{boom}::f")
    assert r.exit_code == 2 and "at import" in r.output


def test_plot_needs_matplotlib(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = run(os.path.join(TEXTBOOK, "k2_as_loss.py") + "::k2_pow_loss", "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 2 and "matplotlib" in r.output

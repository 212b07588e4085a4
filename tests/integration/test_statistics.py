"""`klaudit check --statistics` and `klaudit inventory`, the project's KL report card."""
import json
import os
import re

import pytest

from kl_helpers import BAD, GOOD, ROOT, klaudit

K1 = ("def loss_fn(logp, ref_logp, loss, beta):\n"
      "    return loss + beta * (logp - ref_logp).mean()\n")
METRIC = ("def stats(logp, ref_logp):\n"
          "    kl = (logp - ref_logp).mean().item()\n"
          "    return {'kl': kl}\n")


@pytest.fixture
def proj(tmp_path):
    (tmp_path / "a.py").write_text(BAD)
    (tmp_path / "b.py").write_text(BAD)
    (tmp_path / "c.py").write_text(K1)
    (tmp_path / "good.py").write_text(GOOD)
    return tmp_path


def test_statistics_counts_per_code_with_the_rule_name(proj):
    rc, out, _ = klaudit("check", ".", "--statistics", cwd=proj)
    assert rc == 1
    assert out.splitlines() == [
        "    2  KL102  k3-as-loss",
        "    1  KL101  k1-as-loss",
        "    3  findings in total",
    ]


def test_statistics_as_json(proj):
    rc, out, _ = klaudit("check", ".", "--statistics", "--output-format", "json", cwd=proj)
    assert rc == 1
    assert json.loads(out)["statistics"] == [{"code": "KL102", "name": "k3-as-loss", "count": 2},
                                             {"code": "KL101", "name": "k1-as-loss", "count": 1}]


def test_statistics_with_nothing_found(proj):
    assert klaudit("check", "good.py", "--statistics", cwd=proj)[:2] == (0, "")


def test_inventory_is_a_readable_report_card(proj):
    (proj / "m.py").write_text(METRIC)
    rc, out, _ = klaudit("inventory", ".", cwd=proj)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "KL report card: 5 KL terms in 5 files"
    assert set(lines[1]) == {"="}
    header = lines[3]
    assert re.split(r"\s{2,}", header) == ["location", "function", "estimator", "placement", "coefficient c(delta)",
                                           "confidence", "verdict"]
    rows = {re.split(r"\s{2,}", ln)[0].lstrip("./"): re.split(r"\s{2,}", ln) for ln in lines[5:10]}
    assert rows["a.py:4"][1:5] == ["grpo_loss", "k3", "as_loss", "1 - delta"]
    assert rows["a.py:4"][-1] == "NOT principled KL102"
    assert rows["c.py:2"][2:4] == ["k1", "as_loss"] and rows["c.py:2"][-1] == "NOT principled KL101"
    assert rows["good.py:2"][2:4] == ["k2", "as_loss"] and rows["good.py:2"][-1] == "principled"
    assert rows["m.py:2"][3:5] == ["metric", "-"] and rows["m.py:2"][-1] == "-"
    # columns line up: every row starts its columns where the header does
    starts = [m.start() for m in re.finditer(r"(?<=  )\S|^\S", header)]
    for ln in lines[5:10]:
        assert all(ln[s - 2:s] == "  " for s in starts[1:]), ln
    totals = lines[11]
    assert totals.startswith("5 KL terms, 3 with findings: 1 principled, 3 not principled, 1 not on a gradient path")
    assert "-log(delta)" in out and "klaudit rule CODE" in out


def test_inventory_of_the_bundled_example():
    rc, out, _ = klaudit("inventory", os.path.join("examples", "grpo_train.py"), cwd=ROOT)
    assert rc == 0
    assert "examples/grpo_train.py:26" in out and "k3" in out and "NOT principled KL102" in out
    assert re.search(r"examples/grpo_train.py:37\s+shaped_rewards\s+k1\s+in_reward\s+-log\(delta\)", out)


def test_inventory_with_nothing(tmp_path):
    (tmp_path / "x.py").write_text("x = 1\n")
    assert klaudit("inventory", "x.py", cwd=tmp_path)[:2] == (0, "No KL terms found.\n")

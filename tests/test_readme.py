"""The README's first two commands are the set-up contract: CI must run exactly them."""
import os
import re

from conftest import ROOT


def readme_commands():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"```\n(.*?)```", text, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip()][:2]


def test_readme_starts_with_two_commands():
    run, test = readme_commands()
    assert run.startswith("python -m pip install .") and "klaudit " in run
    assert "pytest" in test


def test_ci_runs_the_readme_commands():
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read()
    for cmd in readme_commands():
        assert cmd in ci, cmd


def test_the_example_exists():
    run, _ = readme_commands()
    example = run.split("klaudit ", 1)[1].split()[0]
    assert os.path.isfile(os.path.join(ROOT, example))


def test_readme_rule_table_lists_every_rule():
    from klaudit.rules.registry import RULES

    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for r in RULES:
        assert f"[{r.code}](rules/" in text and f"| {r.name} |" in text, r.code

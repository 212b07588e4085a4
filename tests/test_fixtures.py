"""Every fixture file is checked against the expectations written inline in it."""
import glob
import os

import pytest

from conftest import FIXTURES, run_paths
from expectations import actual_findings, read

FILES = sorted(
    p for p in glob.glob(os.path.join(FIXTURES, "**", "*.py"), recursive=True)
    if "/packages/" not in p.replace(os.sep, "/")
)
ESTIMATOR_ALIASES = {"k3_inverted": "k3inv"}


def _preview(path) -> bool:
    """Preview rules run on fixtures that ask for them with a `# klaudit-test: preview` line."""
    with open(path, encoding="utf-8") as fh:
        return any(line.strip() == "# klaudit-test: preview" for line in fh)


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, FIXTURES))
def test_fixture_findings(path):
    exp = read(path)
    report = run_paths([path], preview=_preview(path))
    assert not report.errors, report.errors
    got = {line: codes for (p, line), codes in actual_findings(report).items()}
    assert got == exp.findings, f"findings differ in {path}:\n expected {exp.findings}\n got      {got}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: os.path.relpath(p, FIXTURES))
def test_fixture_terms(path):
    exp = read(path)
    report = run_paths([path], preview=_preview(path))
    got = {}
    for t in report.terms:
        est = t.derivation.estimator
        got[t.loc.line] = (ESTIMATOR_ALIASES.get(est, est), t.placement.kind)
    assert got == exp.terms, f"terms differ in {path}:\n expected {exp.terms}\n got      {got}"

"""The flake8 plugin, run through the real flake8: `flake8 --select KL` reports what `klaudit check` does."""
import glob
import json
import os
import subprocess
import sys

import pytest

from kl_helpers import BAD, FIXTURES, ROOT, klaudit

FLAKE8_FORMAT = "%(path)s|%(row)d|%(col)d|%(code)s|%(text)s"
FIXTURE_FILES = sorted(glob.glob(os.path.join(FIXTURES, "textbook", "*.py"))) + \
    [os.path.join(ROOT, "examples", "grpo_train.py")]


def flake8(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "flake8", "--isolated", *args], capture_output=True, text=True,
                       cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def flake8_findings(path, cwd=None):
    rc, out, err = flake8("--select", "KL", f"--format={FLAKE8_FORMAT}", "--max-line-length", "1000", path, cwd=cwd)
    assert "Traceback" not in err, err
    rows = set()
    for ln in out.splitlines():
        p, row, col, code, text = ln.split("|", 4)
        rows.add((os.path.normpath(p), int(row), int(col), code, text))
    return rc, rows


def klaudit_findings(path, cwd=None):
    rc, out, _ = klaudit("check", path, "--output-format", "json", cwd=cwd)
    doc = json.loads(out)
    return rc, {(os.path.normpath(f["path"]), f["line"], f["column"], f["code"], f["message"])
                for f in doc["findings"]}


def test_the_plugin_is_registered():
    rc, out, _ = flake8("--version")
    assert rc == 0 and "klaudit" in out


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=os.path.basename)
def test_flake8_reports_the_same_findings_as_klaudit(path):
    rc_k, ours = klaudit_findings(path)
    rc_f, theirs = flake8_findings(path)
    assert theirs == ours
    assert (rc_f != 0) == (rc_k != 0)


def test_some_fixture_has_findings():
    # the comparison above must not pass vacuously
    counts = [len(flake8_findings(p)[1]) for p in FIXTURE_FILES]
    assert sum(counts) >= 5 and counts.count(0) >= 1


def test_flake8_noqa_and_klaudit_suppressions(tmp_path):
    (tmp_path / "a.py").write_text(BAD.replace("- 1\n", "- 1  # noqa: KL102\n"))
    (tmp_path / "b.py").write_text(BAD.replace("- 1\n", "- 1  # klaudit: ignore[k3-as-loss]\n"))
    (tmp_path / "c.py").write_text(BAD)
    _, rows = flake8_findings(".", cwd=tmp_path)
    assert {(os.path.basename(r[0]), r[1], r[2], r[3]) for r in rows} == {("c.py", 4, 10, "KL102")}


def test_flake8_honours_the_klaudit_configuration(tmp_path):
    (tmp_path / "c.py").write_text(BAD)
    (tmp_path / "pyproject.toml").write_text('[tool.klaudit]\nignore = ["KL102"]\n')
    assert flake8_findings("c.py", cwd=tmp_path)[1] == set()


def test_flake8_with_a_syntax_error_does_not_crash(tmp_path):
    (tmp_path / "s.py").write_text("def f(:\n    kl = logp - ref_logp\n")
    rc, out, err = flake8("--select", "KL,E999", "s.py", cwd=tmp_path)
    assert "Traceback" not in err and "E999" in out

"""Shared by the robustness tests: run the real ``klaudit`` command and read its report."""
import json
import os
import re
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures")
EXAMPLE = os.path.join(ROOT, "examples", "grpo_train.py")

# k3 differentiated as a loss: KL102 at line 4, column 10
KL_CODE = textwrap.dedent('''\
    import torch

    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
        loss = pg_loss + beta * kl.mean()
        return loss
''')
KL_LINE, KL_COL = 4, 10
CLEAN_CODE = textwrap.dedent('''\
    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = 0.5 * (logp - ref_logp) ** 2
        loss = pg_loss + beta * kl.mean()
        return loss
''')

ERROR_LINE = re.compile(r"^(?P<path>.+): error: (?P<reason>\S.*)$")


def env(**extra):
    e = dict(os.environ)
    e.pop("KLAUDIT_OUTPUT_FORMAT", None)
    e.update(extra)
    return e


def klaudit(*args, cwd=None, timeout=300, **extra_env):
    """The real command line in a fresh process: (exit code, stdout, stderr) as text (bytes that are
    not UTF-8 replaced, so that a report with them still compares)."""
    p = subprocess.run([sys.executable, "-m", "klaudit", *args], capture_output=True, cwd=cwd, timeout=timeout,
                       env=env(**extra_env))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def assert_no_traceback(rc, out, err):
    assert "Traceback" not in out and "Traceback" not in err, err[-3000:]
    assert rc in (0, 1, 2), (rc, err[-3000:])


def check_json(*args, cwd=None, **extra_env):
    """``klaudit check ARGS --output-format json``: (exit code, document, stderr), with the report
    checked for well-formedness."""
    rc, out, err = klaudit("check", *args, "--output-format", "json", cwd=cwd, **extra_env)
    assert_no_traceback(rc, out, err)
    doc = json.loads(out)
    assert isinstance(doc["findings"], list) and isinstance(doc["errors"], list)
    for e in doc["errors"]:
        assert e["path"] and e["message"].strip() and "\n" not in e["message"], e
    return rc, doc, err


def errors_by_path(doc):
    out = {}
    for e in doc["errors"]:
        out.setdefault(e["path"], []).append(e["message"])
    return out


def findings_by_path(doc):
    out = {}
    for f in doc["findings"]:
        out.setdefault(f["path"], []).append((f["line"], f["column"], f["code"]))
    return out


def sort_key(f):
    return (f["path"], f["line"], f["column"], f["code"])

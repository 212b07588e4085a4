"""The README's integration snippets are real: the YAML and TOML parse, the hook id exists, and the
commands they show run as documented."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib

import yaml

from kl_helpers import ROOT, klaudit

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def blocks(lang):
    return [body for kind, body in BLOCKS if kind == lang]


def section(title):
    m = re.search(rf"^##+ {re.escape(title)}.*?$(.*?)(?=^## )", README + "\n## ", re.S | re.M)
    assert m, title
    return m.group(1)


def test_yaml_snippets_parse():
    assert len(blocks("yaml")) >= 3
    for b in blocks("yaml"):
        yaml.safe_load(b)


def test_pre_commit_snippets_name_the_hook():
    hooks = {h["id"] for h in yaml.safe_load(open(os.path.join(ROOT, ".pre-commit-hooks.yaml")))}
    configs = [yaml.safe_load(b) for b in blocks("yaml") if "rev:" in b]
    assert configs
    for c in configs:
        repos = c["repos"] if isinstance(c, dict) else c
        assert {h["id"] for r in repos for h in r["hooks"]} <= hooks


def test_ruff_note():
    (toml,) = [b for b in blocks("toml") if "ruff" in b]
    assert tomllib.loads(toml)["tool"]["ruff"]["lint"]["external"] == ["KL"]
    assert "RUF100" in section("Alongside ruff")


def test_the_workflow_uploads_what_klaudit_writes(tmp_path):
    (wf,) = [yaml.safe_load(b) for b in blocks("yaml") if "upload-sarif" in b]
    steps = wf["jobs"]["klaudit"]["steps"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("github/codeql-action/upload-sarif@"))
    assert wf["permissions"]["security-events"] == "write"
    run = next(s["run"] for s in steps if str(s.get("run", "")).startswith("klaudit "))
    shutil.copy(os.path.join(ROOT, "examples", "grpo_train.py"), tmp_path / "train.py")
    rc, _, err = klaudit(*shlex.split(run)[1:], cwd=tmp_path)
    assert rc == 0, err  # --exit-zero: findings do not fail the job
    doc = json.loads((tmp_path / upload["with"]["sarif_file"]).read_text())
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"]


def test_the_baseline_commands(tmp_path):
    body = section("Baseline")
    cmds = [ln.split("#")[0].strip() for ln in re.search(r"```\n(.*?)```", body, re.S).group(1).splitlines()]
    write, use = [shlex.split(c) for c in cmds if c]
    (tmp_path / "src").mkdir()
    shutil.copy(os.path.join(ROOT, "examples", "grpo_train.py"), tmp_path / "src" / "train.py")
    assert klaudit(*write[1:], cwd=tmp_path)[0] == 0
    assert klaudit(*use[1:], cwd=tmp_path)[0] == 0
    with open(tmp_path / "src" / "train.py", "a") as fh:
        fh.write("\n\ndef k1_loss(logp, ref_logp, loss, beta):\n    return loss + beta * (logp - ref_logp).mean()\n")
    rc, out, _ = klaudit(*use[1:], "--output-format", "concise", cwd=tmp_path)
    assert rc == 1 and len(out.splitlines()) == 1 and "KL101" in out


def test_the_flake8_command():
    body = section("Alongside flake8")
    cmd = next(ln for ln in re.search(r"```\n(.*?)```", body, re.S).group(1).splitlines()
               if ln.startswith("flake8 "))
    p = subprocess.run([sys.executable, "-m", *shlex.split(cmd)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 1 and "examples/grpo_train.py:26:20: KL102 " in p.stdout


def test_output_formats_table_lists_every_format():
    from klaudit.cli import OUTPUT_FORMATS

    table = section("Output formats")
    for fmt in OUTPUT_FORMATS:
        assert f"`{fmt}`" in table

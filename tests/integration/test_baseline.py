"""`klaudit check --write-baseline FILE` / `--baseline FILE`: adopting klaudit on legacy code."""
import json
import textwrap

import pytest

from kl_helpers import BAD, klaudit

SECOND = textwrap.dedent('''\

    def other_loss(logp, ref_logp, pg_loss, beta):
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
        return pg_loss + beta * kl.mean()
''')
K1 = textwrap.dedent('''\

    def k1_loss(logp, ref_logp, loss, beta):
        return loss + beta * (logp - ref_logp).mean()
''')


@pytest.fixture
def legacy(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BAD + SECOND)
    rc, out, err = klaudit("check", "src", "--write-baseline", "klaudit-baseline.json", cwd=tmp_path)
    assert rc == 0 and out == ""
    assert "recorded 2 findings in klaudit-baseline.json" in err
    return tmp_path


def concise(tmp_path, *args):
    return klaudit("check", "src", "--output-format", "concise", *args, cwd=tmp_path)


def test_the_file_format(legacy):
    doc = json.loads((legacy / "klaudit-baseline.json").read_text())
    assert doc["klaudit_baseline"] == 1
    assert [(e["code"], e["path"], e["line"]) for e in doc["findings"]] == [("KL102", "src/train.py", 4),
                                                                           ("KL102", "src/train.py", 9)]
    assert doc["findings"][0]["source"] == "kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1"
    assert len({e["fingerprint"] for e in doc["findings"]}) == 2


def test_baselined_findings_are_hidden(legacy):
    assert concise(legacy)[0] == 1
    rc, out, _ = concise(legacy, "--baseline", "klaudit-baseline.json")
    assert (rc, out) == (0, "")
    rc, out, _ = klaudit("check", "src", "--baseline", "klaudit-baseline.json", cwd=legacy)
    assert rc == 0 and out == "No new findings (2 recorded in the baseline).\n"


def test_moving_code_keeps_findings_baselined(legacy):
    src = legacy / "src" / "train.py"
    # code moves down (new lines above), then up (blank lines removed)
    moved = "# header\n\n\n\n" + BAD + "\n\n\n" + SECOND
    src.write_text(moved)
    assert concise(legacy, "--baseline", "klaudit-baseline.json")[:2] == (0, "")
    src.write_text((BAD + SECOND).replace("\n\n", "\n"))
    assert concise(legacy, "--baseline", "klaudit-baseline.json")[:2] == (0, "")
    # the two functions swap places: each identical finding still matches one entry
    src.write_text("import torch\n" + SECOND + BAD.replace("import torch\n", ""))
    assert concise(legacy, "--baseline", "klaudit-baseline.json")[:2] == (0, "")


def test_a_new_finding_is_reported(legacy):
    src = legacy / "src" / "train.py"
    src.write_text("\n\n" + BAD + SECOND + K1)
    rc, out, _ = concise(legacy, "--baseline", "klaudit-baseline.json")
    assert rc == 1
    (line,) = out.splitlines()
    assert line.startswith("src/train.py:15:26: KL101 ")
    # a third copy of an already-baselined line is new too (occurrences are counted)
    src.write_text(BAD + SECOND + SECOND.replace("other_loss", "third_loss"))
    rc, out, _ = concise(legacy, "--baseline", "klaudit-baseline.json")
    assert rc == 1 and len(out.splitlines()) == 1 and ":13:10: KL102" in out
    # and the full format says how many were hidden
    out = klaudit("check", "src", "--baseline", "klaudit-baseline.json", cwd=legacy)[1]
    assert out.splitlines()[-1] == "Found 1 finding in 1 file (2 more recorded in the baseline)."


def test_an_edited_line_is_a_new_finding(legacy):
    src = legacy / "src" / "train.py"
    src.write_text(BAD.replace("- 1\n", "- 1.0\n") + SECOND)
    rc, out, _ = concise(legacy, "--baseline", "klaudit-baseline.json")
    assert rc == 1 and out.startswith("src/train.py:4:10: KL102")


def test_the_baseline_works_from_another_directory(legacy):
    rc, out, _ = klaudit("check", "train.py", "--baseline", "../klaudit-baseline.json", cwd=legacy / "src")
    assert (rc, out) == (0, "No new findings (2 recorded in the baseline).\n")


def test_the_baseline_works_with_every_format(legacy):
    (legacy / "src" / "train.py").write_text(BAD + SECOND + K1)
    for fmt, check in (("json", lambda o: len(json.loads(o)["findings"]) == 1),
                       ("sarif", lambda o: len(json.loads(o)["runs"][0]["results"]) == 1),
                       ("github", lambda o: o.count("::error") == 1 and "KL101" in o)):
        rc, out, _ = klaudit("check", "src", "--baseline", "klaudit-baseline.json", "--output-format", fmt,
                             cwd=legacy)
        assert rc == 1 and check(out), (fmt, out)


@pytest.mark.parametrize("content, message", [
    (None, "baseline file not found"),
    ("{", "baseline is not valid JSON at line 1"),
    ("[]", "not a klaudit baseline"),
    ('{"findings": []}', "not a klaudit baseline"),
    ('{"klaudit_baseline": 99, "findings": []}', "written by a newer klaudit"),
    ('{"klaudit_baseline": "1", "findings": []}', "must be an integer"),
    ('{"klaudit_baseline": 1, "findings": {}}', "no \"findings\" list"),
    ('{"klaudit_baseline": 1, "findings": [{"code": "KL102"}]}', "entry 1 has no \"fingerprint\""),
])
def test_a_missing_or_corrupt_baseline_is_a_clear_error(legacy, content, message):
    p = legacy / "b.json"
    if content is not None:
        p.write_text(content)
    rc, out, err = klaudit("check", "src", "--baseline", "b.json", cwd=legacy)
    assert rc == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("b.json: error: ") and message in line, line


def test_writing_to_an_unwritable_place_is_a_clear_error(legacy):
    rc, _, err = klaudit("check", "src", "--write-baseline", "no/such/dir/b.json", cwd=legacy)
    assert rc == 2 and err.startswith("no/such/dir/b.json: error: cannot write baseline")

"""The command line contract: formats, exit codes, selection, suppression, configuration."""
import json
import os
import subprocess
import sys
import textwrap

import pytest


BAD = textwrap.dedent('''\
    import torch

    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
        loss = pg_loss + beta * kl.mean()
        return loss
''')
GOOD = textwrap.dedent('''\
    def grpo_loss(logp, ref_logp, pg_loss, beta):
        kl = 0.5 * (logp - ref_logp) ** 2
        loss = pg_loss + beta * kl.mean()
        return loss
''')


def klaudit(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "klaudit", *args], capture_output=True, text=True, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def proj(tmp_path):
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "good.py").write_text(GOOD)
    return tmp_path


def test_text_output_and_exit_1(proj):
    rc, out, err = klaudit(str(proj / "bad.py"))
    assert rc == 1
    line = out.splitlines()[0]
    assert line.startswith(f"{proj / 'bad.py'}:4:10: KL102 ")
    assert "1 - delta" in line


def test_check_is_the_default_command(proj):
    assert klaudit("check", str(proj / "bad.py"))[1] == klaudit(str(proj / "bad.py"))[1]


def test_clean_exit_0(proj):
    rc, out, _ = klaudit(str(proj / "good.py"))
    assert rc == 0 and out == ""


def test_json_contract(proj):
    rc, out, _ = klaudit("check", str(proj), "--output-format", "json")
    doc = json.loads(out)
    assert rc == 1
    assert set(doc) >= {"findings", "errors"}
    f = doc["findings"][0]
    assert {"code", "severity", "path", "line", "column", "message"} <= set(f)
    assert (f["code"], f["line"], f["column"]) == ("KL102", 4, 10)
    assert klaudit("check", str(proj), "--format", "json")[1] == out


def test_exit_zero(proj):
    assert klaudit(str(proj / "bad.py"), "--exit-zero")[0] == 0


def test_errors_exit_2_and_other_files_still_linted(proj):
    (proj / "broken.py").write_text("def f(:\n  kl = 1\n")
    rc, out, _ = klaudit(str(proj))
    assert rc == 2
    assert "KL102" in out
    assert f"{proj / 'broken.py'}: error: syntax error" in out


def test_missing_path_is_an_error(proj):
    rc, out, _ = klaudit(str(proj / "nope.py"))
    assert rc == 2 and "no such file" in out


def test_select_and_ignore_by_code_name_and_prefix(proj):
    assert klaudit(str(proj / "bad.py"), "--ignore", "KL102")[0] == 0
    assert klaudit(str(proj / "bad.py"), "--ignore", "k3-as-loss")[0] == 0
    assert klaudit(str(proj / "bad.py"), "--select", "KL101")[0] == 0
    assert klaudit(str(proj / "bad.py"), "--select", "KL1")[0] == 1
    rc, _, err = klaudit(str(proj / "bad.py"), "--select", "KL999")
    assert rc == 2 and "unknown rule" in err


def test_inventory_json_contract(proj):
    rc, out, _ = klaudit("inventory", str(proj), "--output-format", "json")
    assert rc == 0
    terms = json.loads(out)["terms"]
    keys = {"path", "line", "function", "estimator", "placement", "direction", "detached", "coefficient",
            "principled", "codes", "use_line"}
    assert all(keys <= set(t) for t in terms)
    by_file = {os.path.basename(t["path"]): t for t in terms}
    bad, good = by_file["bad.py"], by_file["good.py"]
    assert (bad["estimator"], bad["placement"], bad["coefficient"], bad["principled"], bad["codes"], bad["use_line"]) \
        == ("k3", "as_loss", "1 - delta", False, ["KL102"], 5)
    assert (good["estimator"], good["placement"], good["principled"], good["codes"]) == ("k2", "as_loss", True, [])
    assert bad["direction"] == "reverse"


def test_rule_docs_served(proj):
    rc, out, _ = klaudit("rule", "KL102")
    assert rc == 0 and "k3-as-loss" in out and "1 - delta" in out
    assert klaudit("rule", "k3-as-loss")[1] == out
    assert klaudit("rule", "KL999")[0] == 2
    rc, out, _ = klaudit("rule", "--all")
    assert "KL101" in out and "KL103" in out


def test_trailing_suppression(proj):
    src = BAD.replace("- 1\n", "- 1  # klaudit: ignore[KL102]\n")
    (proj / "bad.py").write_text(src)
    assert klaudit(str(proj / "bad.py"))[0] == 0


def test_suppression_by_name_and_noqa(proj):
    for c in ("# klaudit: ignore[k3-as-loss]", "# noqa: KL102", "# klaudit: ignore"):
        (proj / "bad.py").write_text(BAD.replace("- 1\n", f"- 1  {c}\n"))
        assert klaudit(str(proj / "bad.py"))[0] == 0, c


def test_suppression_other_code_does_not_silence(proj):
    (proj / "bad.py").write_text(BAD.replace("- 1\n", "- 1  # klaudit: ignore[KL101]\n"))
    assert klaudit(str(proj / "bad.py"))[0] == 1
    (proj / "bad.py").write_text(BAD.replace("- 1\n", "- 1  # noqa: E501\n"))
    assert klaudit(str(proj / "bad.py"))[0] == 1


def test_own_line_suppression_covers_the_statement(proj):
    src = textwrap.dedent('''\
        import torch

        def grpo_loss(logp, ref_logp, pg_loss, beta):
            # klaudit: ignore[KL102]
            kl = (
                torch.exp(ref_logp - logp)
                - (ref_logp - logp)
                - 1
            )
            return pg_loss + beta * kl.mean()
    ''')
    (proj / "bad.py").write_text(src)
    assert klaudit(str(proj / "bad.py"))[0] == 0
    (proj / "bad.py").write_text(src.replace("    # klaudit: ignore[KL102]\n", ""))
    assert klaudit(str(proj / "bad.py"))[0] == 1


def test_pyproject_configuration(proj):
    (proj / "pyproject.toml").write_text('[tool.klaudit]\nignore = ["KL102"]\n')
    assert klaudit(str(proj / "bad.py"))[0] == 0
    assert klaudit(str(proj / "bad.py"), "--select", "KL102")[0] == 1  # the CLI wins
    (proj / "pyproject.toml").write_text('[tool.klaudit]\nper-file-ignores = {"bad.py" = ["k3-as-loss"]}\n')
    assert klaudit(str(proj / "bad.py"))[0] == 0
    (proj / "pyproject.toml").write_text('[tool.klaudit]\nexclude = ["bad.py"]\n')
    assert klaudit(str(proj))[0] == 0


def test_bad_configuration_exits_2(proj):
    (proj / "pyproject.toml").write_text('[tool.klaudit]\nselect = ["KL9X9"]\n')
    rc, _, err = klaudit(str(proj / "bad.py"))
    assert rc == 2 and "pyproject.toml" in err
    (proj / "pyproject.toml").write_text('[tool.klaudit]\nbogus = 1\n')
    rc, _, err = klaudit(str(proj / "bad.py"))
    assert rc == 2 and "bogus" in err


def test_columns_are_one_based(tmp_path):
    (tmp_path / "a.py").write_text("def loss_fn(logp, ref_logp, loss, beta):\n"
                                   "    return loss + beta * (logp - ref_logp).mean()\n")
    rc, out, _ = klaudit(str(tmp_path / "a.py"))
    assert rc == 1
    # `(logp - ref_logp)` starts at 0-based column 25 -> 1-based 26
    assert out.split(":")[1:3] == ["2", "26"]

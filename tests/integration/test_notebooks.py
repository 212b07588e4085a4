"""Jupyter notebooks, linted cell by cell through the real `klaudit` command."""
import json
import re

import pytest

from kl_helpers import klaudit

from klaudit.notebook import python_lines


def code(*lines, count=1):
    return {"cell_type": "code", "execution_count": count, "metadata": {}, "outputs": [],
            "source": [ln + "\n" for ln in lines[:-1]] + [lines[-1]]}


def markdown(text):
    return {"cell_type": "markdown", "metadata": {}, "source": [text]}


def notebook(*cells, language="python"):
    return {"cells": list(cells), "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": language, "name": "python3"},
                         "language_info": {"name": language}}}


K3_CELL = code(
    "%%time",
    "def grpo_loss(logp, ref_logp, pg_loss, beta):",
    "    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1",
    "    loss = pg_loss + beta * kl.mean()",
    "    return loss",
)


def write(tmp_path, name, nb):
    p = tmp_path / name
    p.write_text(json.dumps(nb, indent=1))
    return p


@pytest.fixture
def nb(tmp_path):
    write(tmp_path, "train.ipynb", notebook(
        markdown("# GRPO, step by step"),
        code("%pip install torch", "!nvidia-smi", "import torch", "files = !ls", "torch.exp?"),
        K3_CELL,
        code("%%bash", "echo this is not python ((("),
        code("def broken(:", "    pass"),
        code("def shaped(scores, old_logps, ref_logps, kl_coef):",
             "    with torch.no_grad():",
             "        kl = (ref_logps - old_logps).exp() - 1 - (ref_logps - old_logps)",
             "    rewards = scores - kl_coef * kl",
             "    return rewards"),
    ))
    return tmp_path


def test_findings_name_the_cell_and_the_line_in_it(nb):
    rc, out, _ = klaudit("check", "train.ipynb", "--output-format", "concise", cwd=nb)
    assert rc == 2  # a cell does not parse
    lines = out.splitlines()
    assert any(ln.startswith("train.ipynb:cell 3:3:10: KL102 ") for ln in lines), out
    assert any(ln.startswith("train.ipynb:cell 6:3:14: KL103 ") for ln in lines), out
    # the broken cell is one clear error naming it; the other cells were still linted
    assert "train.ipynb: error: cell 5: syntax error at line 1" in out
    assert "Traceback" not in out
    # a line number quoted in a message is also counted inside the cell
    k3 = next(ln for ln in lines if "KL102" in ln)
    assert "at cell 3, line 4" in k3 and "at line " not in k3


def test_json_has_the_cell(nb):
    _, out, _ = klaudit("check", "train.ipynb", "--output-format", "json", cwd=nb)
    doc = json.loads(out)
    f = {x["code"]: x for x in doc["findings"]}
    assert (f["KL102"]["cell"], f["KL102"]["line"], f["KL102"]["column"], f["KL102"]["end_line"]) == (3, 3, 10, 3)
    assert (f["KL103"]["cell"], f["KL103"]["line"]) == (6, 3)
    (err,) = doc["errors"]
    assert err["path"] == "train.ipynb" and err["message"].startswith("cell 5: syntax error")


def test_inventory_locates_terms_in_cells(nb):
    rc, out, _ = klaudit("inventory", "train.ipynb", cwd=nb)
    assert "train.ipynb:cell 3:3" in out and "train.ipynb:cell 6:3" in out
    terms = json.loads(klaudit("inventory", "train.ipynb", "--output-format", "json", cwd=nb)[1])["terms"]
    assert sorted((t["cell"], t["line"], t["use_cell"], t["use_line"]) for t in terms) == [(3, 3, 3, 4), (6, 3, 6, 4)]


def test_sarif_and_github_point_at_the_notebook_json_line(nb):
    raw = (nb / "train.ipynb").read_text().splitlines()
    json_line = next(i for i, ln in enumerate(raw, 1) if "torch.exp(ref_logp - logp)" in ln)
    out = klaudit("check", "train.ipynb", "--output-format", "github", cwd=nb)[1]
    (ann,) = [ln for ln in out.splitlines() if "KL102" in ln]
    assert ann.startswith(f"::warning file=train.ipynb,line={json_line},title=klaudit (KL102)::cell 3, line 3: ")
    doc = json.loads(klaudit("check", "train.ipynb", "--output-format", "sarif", cwd=nb)[1])
    (r,) = [x for x in doc["runs"][0]["results"] if x["ruleId"] == "KL102"]
    assert r["locations"][0]["physicalLocation"]["region"] == {"startLine": json_line}
    assert (r["properties"]["cell"], r["properties"]["cellLine"]) == (3, 3)


def test_suppression_comments_work_inside_cells(tmp_path):
    cell = dict(K3_CELL)
    cell["source"] = [s.replace("- 1\n", "- 1  # klaudit: ignore[KL102]\n") for s in K3_CELL["source"]]
    write(tmp_path, "a.ipynb", notebook(code("import torch"), cell))
    assert klaudit("check", "a.ipynb", cwd=tmp_path)[0] == 0
    own_line = dict(K3_CELL)
    own_line["source"] = K3_CELL["source"][:2] + ["    # noqa: KL102\n"] + K3_CELL["source"][2:]
    write(tmp_path, "b.ipynb", notebook(code("import torch"), own_line))
    assert klaudit("check", "b.ipynb", cwd=tmp_path)[0] == 0
    # an own-line comment ending one cell does not reach into the next one
    write(tmp_path, "c.ipynb", notebook(code("import torch", "# klaudit: ignore[KL102]"), K3_CELL))
    rc, out, _ = klaudit("check", "c.ipynb", "--output-format", "concise", cwd=tmp_path)
    assert rc == 1 and out.startswith("c.ipynb:cell 2:3:10: KL102")


def test_broken_json_is_one_error_line(tmp_path):
    (tmp_path / "bad.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ["kl = logp - ref_logp"]}')
    (tmp_path / "ok.py").write_text("def loss_fn(logp, ref_logp, loss, beta):\n"
                                    "    return loss + beta * (logp - ref_logp).mean()\n")
    rc, out, err = klaudit("check", "bad.ipynb", "ok.py", "--output-format", "concise", cwd=tmp_path)
    assert rc == 2
    errors = [ln for ln in out.splitlines() if "error" in ln]
    assert errors == ["bad.ipynb: error: notebook is not valid JSON: Expecting ',' delimiter at line 1, column 69"]
    assert "ok.py:2:26: KL101" in out  # the other file is still linted
    assert "Traceback" not in out + err


@pytest.mark.parametrize("content, message", [
    ('["kl"]', "not a Jupyter notebook"),
    ('{"kl": 1}', "not a Jupyter notebook"),
    ('{"cells": [{"cell_type": "code", "source": 3}], "kl": 1}', "cell 1: \"source\" is neither"),
    (b'{"cells": [], "kl": "\xff"}', "not valid UTF-8"),
])
def test_malformed_notebooks(tmp_path, content, message):
    p = tmp_path / "x.ipynb"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    rc, out, _ = klaudit("check", "x.ipynb", cwd=tmp_path)
    assert rc == 2
    (line,) = out.splitlines()
    assert line.startswith("x.ipynb: error: ") and message in line


def test_other_kernels_are_skipped(tmp_path):
    write(tmp_path, "r.ipynb", notebook(code("kl <- logp - ref_logp"), language="R"))
    assert klaudit("check", "r.ipynb", cwd=tmp_path)[:2] == (0, "")


def test_discovered_in_directories(nb):
    rc, out, _ = klaudit("check", ".", "--output-format", "concise", cwd=nb)
    assert re.search(r"train\.ipynb:cell 3:3:10: KL102", out)


def test_magics_blanked_but_continuations_kept():
    src = "%matplotlib inline\nx = ('%d'\n     % 3)\n!ls -l \\\n   more\ny = 1\nfiles = !ls\nobj?\n"
    assert python_lines(src) == ["pass", "x = ('%d'", "     % 3)", "pass", "", "y = 1", "pass", "pass", ""]
    assert python_lines("%%bash\necho hi\n") is None
    assert python_lines("%%timeit\nf(x)\n") == ["", "f(x)", ""]
    assert python_lines('s = """\n%not a magic\n"""\n') == ['s = """', "%not a magic", '"""', ""]
    assert python_lines("for f in fs:\n    !rm {f}\n") == ["for f in fs:", "    pass", ""]

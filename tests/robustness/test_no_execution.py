"""The linter never imports or runs the code it lints; only `klaudit probe` does, and says so."""
import os

import pytest

from rb_helpers import KL_CODE, KL_COL, KL_LINE, assert_no_traceback, check_json, findings_by_path, klaudit


def _writes_marker(marker) -> str:
    """Module-level code that leaves a marker file behind when it runs, and KL code after it."""
    return (f"open({str(marker)!r}, 'w').write('executed')\n"
            f"import os; os.makedirs({str(marker) + '.d'!r}, exist_ok=True)\n\n" + KL_CODE)


@pytest.fixture
def trap(tmp_path):
    proj = tmp_path / "proj"
    pkg = proj / "pkg"
    pkg.mkdir(parents=True)
    markers = tmp_path / "markers"
    markers.mkdir()
    files = {
        "train.py": proj / "train.py",
        "pkg/__init__.py": pkg / "__init__.py",
        "pkg/losses.py": pkg / "losses.py",
        "conftest.py": proj / "conftest.py",
        "setup.py": proj / "setup.py",
        **{f"pkg/m{i}.py": pkg / f"m{i}.py" for i in range(4)},  # 9 files: --jobs 2 uses worker processes
    }
    for name, path in files.items():
        path.write_text(_writes_marker(markers / name.replace("/", "_")))
    (proj / "pyproject.toml").write_text("[tool.klaudit]\n")
    return proj, markers, files


@pytest.mark.parametrize("extra", [[], ["--no-prefilter", "--jobs", "2"]])
def test_linting_runs_none_of_the_linted_code(trap, extra):
    proj, markers, files = trap
    rc, doc, _ = check_json(str(proj), "--no-cache", *extra, cwd=str(proj))
    assert os.listdir(markers) == [], "linted code was executed"
    assert rc == 1 and not doc["errors"]
    found = findings_by_path(doc)
    offset = 3  # the marker lines above the KL code
    for name, path in files.items():
        assert (KL_LINE + offset, KL_COL, "KL102") in found.get(str(path), []), (name, found)


def test_inventory_and_explain_run_none_of_it(trap):
    proj, markers, files = trap
    rc, out, err = klaudit("inventory", str(proj), "--no-cache", "--output-format", "json", cwd=str(proj))
    assert_no_traceback(rc, out, err)
    assert rc == 0 and '"estimator": "k3"' in out
    rc, out, err = klaudit("explain", f"{files['pkg/losses.py']}:{KL_LINE + 3}", "--context", str(proj), "--no-cache",
                           cwd=str(proj))
    assert_no_traceback(rc, out, err)
    assert rc == 0 and "1 - delta" in out
    assert os.listdir(markers) == [], "linted code was executed"


def test_the_markers_would_show_execution(trap):
    """The trap works: running a file's marker lines does leave its marker."""
    proj, markers, files = trap
    head = files["setup.py"].read_text().split("\n\n", 1)[0]  # the marker lines, not the KL code
    exec(compile(head, str(files["setup.py"]), "exec"), {})
    assert sorted(os.listdir(markers)) == ["setup.py", "setup.py.d"]


def test_help_says_who_runs_code():
    rc, out, err = klaudit("probe", "--help")
    assert rc == 0, err
    text = " ".join(out.split()).lower()
    assert "imports and runs the file" in text and "only probe code you trust" in text
    rc, out, _ = klaudit("--help")
    assert rc == 0 and "never imports or runs it" in " ".join(out.split())

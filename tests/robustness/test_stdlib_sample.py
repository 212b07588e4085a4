"""A sample of the standard-library sweep (benchmarks/stdlib_sweep.py), small enough for CI: real
library files, Python 2 syntax, bad encodings and broken syntax included, copied into a temporary
directory and linted by the real command line.  No traceback, no finding (the standard library holds
no RL training code), and every file that cannot be analysed gets exactly one error."""
import glob
import importlib.util
import os
import re
import shutil
import sysconfig
import warnings

import pytest

from rb_helpers import ROOT


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("stdlib_sweep", os.path.join(ROOT, "benchmarks", "stdlib_sweep.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DESIGNED_BAD = ("bad_coding*.py", "badsyntax_3131.py", "badsyntax_pep3120.py")  # lexically or by encoding


def _every_kth(files, n):
    files = sorted(files)
    return files[::max(1, len(files) // n)][:n]


def sample(libdir, n=12):
    """(relative paths of) a deterministic sample of small modules, plus the test data made to fail."""
    mods = [p for p in glob.glob(os.path.join(libdir, "*.py")) if os.path.getsize(p) < 40_000]
    out = _every_kth(mods, n)
    for sub in ("test", os.path.join("test", "tokenizedata")):
        for pattern in DESIGNED_BAD + ("coding*.py",):
            out += sorted(glob.glob(os.path.join(libdir, sub, pattern)))
    return sorted({os.path.relpath(p, libdir) for p in out})


def copy_sample(libdir, rels, dest):
    for rel in rels:
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copyfile(os.path.join(libdir, rel), os.path.join(dest, rel))


def sweep_sample(sweep, tmp_path, libs):
    """Copy each (label, libdir)'s sample under one directory and sweep it in one run."""
    dest = tmp_path / "sample"
    rels_all = []
    for label, libdir in libs:
        rels = sample(libdir)
        copy_sample(libdir, rels, str(dest / label))
        rels_all += [os.path.join(label, r) for r in rels]
    toml = tmp_path / "sweep" / "pyproject.toml"
    toml.parent.mkdir()
    toml.write_text(sweep.SWEEP_TOML)
    row = sweep.sweep_one(str(dest), str(toml), None, False, 300.0)
    return dest, rels_all, row


def check_row(dest, rels, row):
    assert row["problems"] == []  # tracebacks, non-JSON output, findings, internal errors, duplicates
    assert (row["tracebacks"], row["findings"], row["internal"], row["duplicates"], row["unnamed"]) == (0, 0, 0, 0, 0)
    assert row["rc"] in (0, 2)
    assert row["seen"] == len(rels)
    errors = {}
    for path, msg in row["error_list"]:
        errors.setdefault(os.path.relpath(path, dest), []).append(msg)
    assert all(len(m) == 1 and "\n" not in m[0] for m in errors.values())  # one one-line error per file
    assert row["parsed"] + len(errors) == row["seen"]
    designed_bad = [r for r in rels if any(re.fullmatch(p.replace(".", r"\.").replace("*", ".*"), os.path.basename(r))
                                           for p in DESIGNED_BAD)]
    for r in designed_bad:
        assert r in errors, r
    return errors


def _pyenv_libs():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    libs = []
    for d in sorted(glob.glob(os.path.join(root, "versions", "*", "lib", "python*"))):
        if re.fullmatch(r"python\d+\.\d+", os.path.basename(d)) and os.path.isfile(os.path.join(d, "os.py")):
            libs.append((os.path.basename(d), d))
    return sorted(libs, key=lambda vd: tuple(int(x) for x in re.findall(r"\d+", vd[0])))  # oldest first


def test_pyenv_libraries_sample(sweep, tmp_path):
    libs = _pyenv_libs()
    py2 = [(v, d) for v, d in libs if v.startswith("python2")]
    py3 = [(v, d) for v, d in libs if v.startswith("python3")]
    if not py2 and not py3:
        pytest.skip("no pyenv Python libraries on this machine")
    chosen = py2[:1] + py3[:1] + py3[-1:] if len(py3) > 1 else py2[:1] + py3
    dest, rels, row = sweep_sample(sweep, tmp_path, chosen)
    errors = check_row(dest, rels, row)
    if py2:  # Python 2 syntax (print statements, `except E, e`) does not parse: one syntax error each
        label = py2[0][0]
        assert any(r.startswith(label) and m[0].startswith("syntax error") for r, m in errors.items())


def test_running_interpreter_stdlib_sample(sweep, tmp_path):
    """Always runs: the interpreter running the tests has a standard library (its test data may be
    absent, as on Debian)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    dest, rels, row = sweep_sample(sweep, tmp_path, [("stdlib", stdlib)])
    errors = check_row(dest, rels, row)
    # what this interpreter compiles, klaudit analyses: no error for it
    for r in rels:
        with open(os.path.join(dest, r), "rb") as fh:
            data = fh.read()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(data, r, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        assert r not in errors, (r, errors[r])
    assert len(rels) >= 10

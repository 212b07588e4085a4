"""Hostile inputs: every bad file gets exactly one one-line error `path: error: <reason>` naming it,
every other file is still linted, and no traceback ever (the real `python -m klaudit`)."""
import json
import os
import stat
import subprocess
import sys

import pytest

from rb_helpers import (ERROR_LINE, KL_COL, KL_CODE, KL_LINE, assert_no_traceback, check_json,
                        errors_by_path, findings_by_path, klaudit)

N = 10_000
# 10,000-deep nestings of every kind libcst's native parser recurses on (each used to kill the process)
DEEP = {
    "deep_parens.py": "x = " + "(" * N + "1" + ")" * N + "\n",
    "deep_lists.py": "x = " + "[" * N + "]" * N + "\n",
    "deep_calls.py": "x = " + "f(" * N + ")" * N + "\n",
    "deep_unary.py": "x = " + "-" * N + "1\n",
    "deep_binop.py": "x = " + "1 + " * N + "1\n",
    "deep_attrs.py": "x = a" + ".b" * N + "\n",
    "deep_trailers.py": "x = f" + "()" * N + "\n",
    "deep_lambdas.py": "x = " + "lambda: " * N + "1\n",
    "deep_ifexp.py": "x = " + "1 if a else " * N + "1\n",
    "deep_elif.py": "if a == 0:\n    pass\n" + "".join(f"elif a == {i}:\n    pass\n" for i in range(N)),
    "deep_strings.py": "x = (\n" + "".join(f'    "s{i}"\n' for i in range(3 * N)) + ")\n",
}

GOOD = {  # name -> (bytes, the KL102 finding's (line, column))
    "plain.py": (KL_CODE.encode(), (KL_LINE, KL_COL)),
    "bom.py": (b"\xef\xbb\xbf" + KL_CODE.encode(), (KL_LINE, KL_COL)),
    "crlf.py": (KL_CODE.replace("\n", "\r\n").encode(), (KL_LINE, KL_COL)),
    "lone_cr.py": (KL_CODE.replace("\n", "\r").encode(), (KL_LINE, KL_COL)),
    "formfeed.py": (KL_CODE.replace("\n\ndef", "\n\x0c\ndef").encode(), (KL_LINE, KL_COL)),
    "tabs.py": (KL_CODE.replace("    ", "\t").encode(), (KL_LINE, KL_COL - 3)),
    "latin1_cookie.py": (b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + KL_CODE.encode(), (KL_LINE + 2, KL_COL)),
    "with space.py": (KL_CODE.encode(), (KL_LINE, KL_COL)),
    "ünïcødé_名前.py": (KL_CODE.encode(), (KL_LINE, KL_COL)),
}

BAD = {  # name -> (bytes, a word the one error must contain)
    "binary.py": (bytes(range(256)) * 8, "binary"),
    "binary_no_nul.py": (bytes(range(1, 256)) * 8, "cannot decode"),
    "latin1_no_cookie.py": (b"# caf\xe9\n" + KL_CODE.encode(), "cannot decode as utf-8 at line 1"),
    "unknown_cookie.py": (b"# -*- coding: klingon -*-\n" + KL_CODE.encode(), "encoding"),
    "ascii_cookie.py": (b"# coding: ascii\n# caf\xc3\xa9\n" + KL_CODE.encode(), "cannot decode as ascii"),
    "syntax.py": (b"def grpo_loss(:\n    kl = 1\n", "syntax error at line "),
    **{k: (v.encode(), "nested too deeply") for k, v in DEEP.items()},
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile") / "a dir with spaces ü"
    d.mkdir()
    for name, (data, _) in {**GOOD, **BAD}.items():
        (d / name).write_bytes(data)
    (d / "empty.py").write_bytes(b"")
    (d / "x.py").mkdir()  # a directory named like a source file: walked, not read
    (d / "x.py" / "inner.py").write_text(KL_CODE)
    bad = {name: word for name, (_, word) in BAD.items()}
    os.symlink(str(d / "nowhere.py"), str(d / "broken_link.py"))
    os.symlink(str(d / "loop_b.py"), str(d / "loop_a.py"))
    os.symlink(str(d / "loop_a.py"), str(d / "loop_b.py"))
    bad.update({"broken_link.py": "broken symbolic link", "loop_a.py": "symbolic link loop",
                "loop_b.py": "symbolic link loop"})
    with open(d / "huge.py", "wb") as fh:  # 50 MB (sparse): refused by size before it is read
        fh.truncate(50 * 1024 * 1024)
    bad["huge.py"] = "file too large"
    if hasattr(os, "mkfifo"):  # a reader would block forever on it
        os.mkfifo(str(d / "fifo.py"))
        bad["fifo.py"] = "not a regular file"
    return d, bad


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_each_bad_file_one_error_and_the_rest_is_linted(hostile, jobs):
    d, bad = hostile
    rc, doc, _ = check_json(str(d), "--no-prefilter", "--no-cache", "--jobs", jobs)
    assert rc == 2
    errs = errors_by_path(doc)
    assert set(errs) == {str(d / n) for n in bad}, sorted(errs)
    for name, word in bad.items():
        (msg,) = errs[str(d / name)]  # exactly one
        assert word in msg, (name, msg)
    found = findings_by_path(doc)
    for name, (_, (line, col)) in GOOD.items():
        assert (line, col, "KL102") in found.get(str(d / name), []), (name, found.get(str(d / name)))
    assert (KL_LINE, KL_COL, "KL102") in found[str(d / "x.py" / "inner.py")]
    assert not any(p.endswith("empty.py") for p in list(found) + list(errs))


def test_text_report_error_lines(hostile):
    d, bad = hostile
    rc, out, err = klaudit("check", str(d), "--no-prefilter", "--no-cache", "--output-format", "concise", "-j", "1")
    assert_no_traceback(rc, out, err)
    assert rc == 2
    error_lines = [ln for ln in out.splitlines() if ": error: " in ln]
    paths = []
    for ln in error_lines:
        m = ERROR_LINE.match(ln)
        assert m, ln
        paths.append(m["path"])
    assert sorted(paths) == sorted(str(d / n) for n in bad)  # one line each, naming the file
    for name in GOOD:
        assert any(ln.startswith(f"{d / name}:") and " KL102 " in ln for ln in out.splitlines()), name


def test_explicit_paths(hostile):
    d, bad = hostile
    args = [str(d / n) for n in ("broken_link.py", "loop_a.py", "x.py", "plain.py", "huge.py")] + [str(d / "nope.py")]
    rc, doc, _ = check_json(*args, "--no-cache")
    assert rc == 2
    errs = errors_by_path(doc)
    assert errs == {str(d / "broken_link.py"): ["broken symbolic link"],
                    str(d / "loop_a.py"): ["symbolic link loop"],
                    str(d / "nope.py"): ["no such file or directory"],
                    str(d / "huge.py"): [errs[str(d / "huge.py")][0]]}
    assert errs[str(d / "huge.py")][0].startswith("file too large (52.4 MB")
    found = findings_by_path(doc)
    assert set(found) == {str(d / "plain.py"), str(d / "x.py" / "inner.py")}


def test_max_file_size_configured(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.klaudit]\nmax-file-size = 100\n")
    (tmp_path / "big.py").write_text(KL_CODE)  # ~170 bytes
    (tmp_path / "small.py").write_text("kl = 1\n")
    rc, doc, _ = check_json(str(tmp_path), "--no-cache")
    assert rc == 2
    assert errors_by_path(doc) == {str(tmp_path / "big.py"): [doc["errors"][0]["message"]]}
    assert "raise `max-file-size`" in doc["errors"][0]["message"]
    (tmp_path / "pyproject.toml").write_text("[tool.klaudit]\nmax-file-size = 100000\n")
    rc, doc, _ = check_json(str(tmp_path), "--no-cache")
    assert rc == 1 and not doc["errors"] and doc["findings"]


def test_file_name_not_utf8(tmp_path):
    """A name with bytes that are not UTF-8 is an error for that file (every format writes UTF-8),
    even where stdout is strict UTF-8."""
    try:
        with open(os.path.join(os.fsencode(tmp_path), b"bad\xffname.py"), "wb") as fh:
            fh.write(KL_CODE.encode())
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    (tmp_path / "ok.py").write_text(KL_CODE)
    shown = f"{tmp_path}/bad\ufffdname.py"
    for fmt in ("concise", "sarif", "github"):  # the text writer and SARIF's fingerprints used to crash
        rc, out, err = klaudit("check", str(tmp_path), "--no-cache", "--output-format", fmt,
                               PYTHONIOENCODING="utf-8")
        assert_no_traceback(rc, out, err)
        assert rc == 2, (fmt, err)
        if fmt == "sarif":
            out = json.dumps(json.loads(out), ensure_ascii=False)
        assert "file name is not valid UTF-8" in out and shown in out, fmt
        assert "ok.py" in out, fmt
        if fmt == "concise":
            assert f"{shown}: error: file name is not valid UTF-8 (rename the file to lint it)" in out.splitlines()


def _chmod_denies(path) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


def test_unreadable_file(tmp_path):
    p = tmp_path / "secret.py"
    p.write_text(KL_CODE)
    (tmp_path / "ok.py").write_text(KL_CODE)
    os.chmod(p, 0)
    try:
        if not _chmod_denies(p):
            pytest.skip("permissions are not enforced for this user (root?): chmod 000 leaves the file readable")
        rc, doc, _ = check_json(str(tmp_path), "--no-cache")
        assert rc == 2
        assert errors_by_path(doc) == {str(p): ["permission denied"]}
        assert str(tmp_path / "ok.py") in findings_by_path(doc)
    finally:
        os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)


def test_unlistable_directory(tmp_path):
    sub = tmp_path / "locked"
    sub.mkdir()
    (sub / "a.py").write_text(KL_CODE)
    (tmp_path / "ok.py").write_text(KL_CODE)
    os.chmod(sub, 0)
    try:
        try:
            os.listdir(sub)
            pytest.skip("permissions are not enforced for this user (root?): chmod 000 leaves the directory listable")
        except PermissionError:
            pass
        rc, doc, _ = check_json(str(tmp_path), "--no-cache")
        assert rc == 2
        (msg,) = errors_by_path(doc)[str(sub)]
        assert msg.startswith("cannot list directory")
        assert str(tmp_path / "ok.py") in findings_by_path(doc)
    finally:
        os.chmod(sub, stat.S_IRWXU)


def test_permission_denied_is_one_error_in_process(tmp_path, monkeypatch):
    """The read error path, exercised where chmod cannot be (as root): an open() that is refused."""
    from klaudit import engine, source

    p = tmp_path / "secret.py"
    p.write_text(KL_CODE)

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(source, "open", refuse, raising=False)
    r = engine.analyze_file(str(p), str(tmp_path), source.DEFAULT_MAX_BYTES, prefilter=False)
    assert r.error == "permission denied" and r.summary is None


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_nesting_is_refused_before_the_native_parser(name):
    """In this very process: a nesting that reached libcst would kill pytest with SIGSEGV."""
    from klaudit.parse import parse_module
    from klaudit.source import SourceError

    with pytest.raises(SourceError, match="nested too deeply to parse") as e:
        parse_module(DEEP[name])
    assert "\n" not in str(e.value)


def test_nesting_within_the_limits_parses(tmp_path):
    """What the nesting check lets through, libcst parses (in a child process: a crash fails the test,
    not the run), and real code with long implicit string concatenations is not refused."""
    from klaudit.parse import MAX_BRACKETS, MAX_CHAIN

    b, c = MAX_BRACKETS, MAX_CHAIN
    cases = {
        "parens": "x = " + "(" * b + "1" + ")" * b,
        "calls": "x = " + "f(" * (b - 1) + ")" * (b - 1),
        "binop": "x = " + "1 + " * (c - 1) + "1",
        "attrs": "x = a" + ".b" * (c - 1),
        "unary": "x = " + "-" * c + "1",
        "trailers": "x = a" + "[0]" * (c - 1),
        "elif": "if a == 0:\n    pass\n" + "".join(f"elif a == {i}:\n    pass\n" for i in range(c)),
        "strings": "x = (\n" + "".join(f'    "line {i}"\n' for i in range(2500)) + ")",
    }
    script = tmp_path / "parse_all.py"
    script.write_text(
        "import json, sys\nfrom klaudit.parse import parse_module\n"
        "cases = json.load(open(sys.argv[1]))\n"
        "for name, text in cases.items():\n"
        "    parse_module(text + '\\n')\n"
        "    print(name, 'ok', flush=True)\n")
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "cases.json")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr[-2000:])
    assert p.stdout.split() == [w for n in cases for w in (n, "ok")]

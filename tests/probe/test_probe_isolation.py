"""torch stays inside klaudit/probe: nothing else imports it, and the CLI loads without it."""
import ast
import os
import subprocess
import sys

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "klaudit")


def _module_level_imports(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in tree.body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_module_outside_probe_imports_torch():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(folder, f)
            rel = os.path.relpath(path, PACKAGE)
            inside = rel.startswith("probe" + os.sep)
            lazy_inside = rel in (os.path.join("probe", "__init__.py"), os.path.join("probe", "cli.py"),
                                  os.path.join("probe", "errors.py"))
            for name in _module_level_imports(path):
                if name.split(".")[0] == "torch" and (not inside or lazy_inside):
                    offenders.append(rel)
    assert offenders == []


def test_cli_and_probe_package_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import klaudit.cli, klaudit.probe, klaudit.engine\n"
            "assert 'probe' in klaudit.cli.main.commands\n"
            "try:\n    klaudit.probe.measure\nexcept ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "ERR klaudit.probe needs torch" in out.stdout


def test_families_module_stays_plain_python():
    names = set(_module_level_imports(os.path.join(PACKAGE, "derive", "families.py")))
    assert not {n.split(".")[0] for n in names} & {"torch", "sympy", "numpy"}

"""The benchmark runs end to end on a small generated corpus (no timing is asserted)."""
import os
import subprocess
import sys

from conftest import ROOT


def test_benchmark_smoke(tmp_path):
    gen = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_corpus.py"), str(tmp_path / "c"),
                          "--files", "12"], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    p = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_corpus.py"), str(tmp_path / "c"),
                        "--repeat", "1", "--one-file", "0"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    for label in ("klaudit cold", "klaudit warm", "libcst.parse_module", "ast.parse", "peak memory"):
        assert label in p.stdout, p.stdout
    # the generated corpus holds KL terms: the analysis really ran
    inv = subprocess.run([sys.executable, "-m", "klaudit", "check", str(tmp_path / "c"), "--no-cache",
                          "--output-format", "concise"], capture_output=True, text=True)
    assert inv.returncode == 1 and "KL102" in inv.stdout

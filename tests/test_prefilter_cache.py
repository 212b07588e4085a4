"""The prefilter never loses a term; the pool and the cache never change a result."""
import glob
import json
import os
import shutil
import subprocess
import sys

from conftest import FIXTURES, ROOT

from klaudit import engine
from klaudit.config import Config
from klaudit.report import json_report


def _snapshot(report):
    terms = [json_report.term_dict(t) for t in report.terms]
    findings = [f.to_dict() for f in report.findings]
    return json.dumps({"terms": terms, "findings": findings}, sort_keys=True)


def test_prefilter_loses_nothing_on_the_fixtures():
    cfg = Config(root=ROOT)
    cfg.preview = True
    with_pf = engine.run([FIXTURES], cfg, prefilter=True, jobs=1)
    without = engine.run([FIXTURES], cfg, prefilter=False, jobs=1)
    assert with_pf.terms, "the fixtures hold KL terms"
    assert _snapshot(with_pf) == _snapshot(without)


def test_prefilter_skips_files_without_kl_words(tmp_path):
    from klaudit import prefilter

    assert not prefilter.candidate(b"import os\nprint(os.getcwd())\n")
    assert prefilter.candidate(b"kl = logp - ref_logp\n")
    assert prefilter.candidate(b"penalty = beta * (logprobs - ref_logprobs)\n")
    assert not prefilter.candidate(b"x = logits.argmax(-1)\n")


def test_second_stage_reads_helpers_the_candidates_call(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    # a helper module with no KL word: only reached through the call
    (pkg / "maths.py").write_text("import torch\n\ndef penalty(a, b):\n    return torch.exp(b - a) - (b - a) - 1\n")
    (pkg / "train.py").write_text(
        "from pkg.maths import penalty\n\n"
        "def grpo_loss(logp, ref_logp, pg_loss, beta):\n"
        "    kl = penalty(logp, ref_logp)\n"
        "    return pg_loss + beta * kl.mean()\n")
    cfg = Config(root=str(tmp_path))
    report = engine.run([str(pkg)], cfg, prefilter=True, jobs=1)
    assert [(os.path.basename(f.path), f.code) for f in report.findings] == [("maths.py", "KL102"), ("train.py", "KL102")]


def _corpus(tmp_path, n=12):
    src = sorted(glob.glob(os.path.join(FIXTURES, "textbook", "*.py")))
    d = tmp_path / "proj"
    d.mkdir()
    for i in range(n):
        shutil.copy(src[i % len(src)], d / f"m{i}_{os.path.basename(src[i % len(src)])}")
    return d


def _cli(args, cwd):
    p = subprocess.run([sys.executable, "-m", "klaudit", *args], cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stdout


def test_jobs_and_cache_give_identical_output(tmp_path):
    d = _corpus(tmp_path)
    outs = []
    for args in (["--jobs", "1", "--no-cache"], ["--jobs", "2", "--no-cache"], ["--jobs", "2"], ["--jobs", "2"],
                 ["--jobs", "1"]):
        outs.append(_cli(["check", ".", "--output-format", "json", *args], d))
    assert outs[0][0] == 1
    assert all(o == outs[0] for o in outs), "output differs across --jobs and cache states"
    assert (d / ".klaudit_cache").is_dir()


def test_cache_sees_a_changed_file_and_clean_removes_it(tmp_path):
    d = _corpus(tmp_path, n=2)
    rc1, out1 = _cli(["check", ".", "--output-format", "json"], d)
    f = sorted(d.glob("m*.py"))[0]
    f.write_text(f.read_text() + "\n\ndef extra_loss(logp, ref_logp, loss, beta):\n"
                 "    return loss + beta * (logp - ref_logp).mean()\n")
    rc2, out2 = _cli(["check", ".", "--output-format", "json"], d)
    assert len(json.loads(out2)["findings"]) == len(json.loads(out1)["findings"]) + 1
    assert _cli(["clean", "."], d)[0] == 0
    assert not (d / ".klaudit_cache").exists()


def test_cached_terms_follow_a_changed_config_default(tmp_path):
    """A function's terms are cached by its linked summary; a YAML default it depends on lives in
    another file, so the cache must notice when the project answers that question differently."""
    pkg = os.path.join(os.path.dirname(__file__), "..", "fixtures", "packages", "option_yaml_default")
    d = tmp_path / "proj"
    shutil.copytree(pkg, d)
    rc1, out1 = _cli(["check", ".", "--output-format", "json"], d)
    codes1 = sorted(f["code"] for f in json.loads(out1)["findings"])
    assert "KL102" in codes1
    y = d / "ppo" / "config" / "ppo_trainer.yaml"
    y.write_text(y.read_text().replace("kl_loss_type: low_var_kl", "kl_loss_type: mse"))
    rc2, out2 = _cli(["check", ".", "--output-format", "json"], d)
    rc3, out3 = _cli(["check", ".", "--output-format", "json", "--no-cache"], d)
    assert (rc2, out2) == (rc3, out3), "a warm run disagrees with a cold one after a config change"
    assert sorted(f["code"] for f in json.loads(out2)["findings"]) != codes1


def test_imports_follow_the_work(tmp_path):
    """A pre-commit run on a file with no KL word imports neither libcst nor sympy nor torch; a file
    with a KL term needs libcst and sympy (cold cache); a warm cache needs no sympy."""
    code = ("import sys\nfrom klaudit.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('libcst', 'sympy', 'torch') if m in sys.modules), file=sys.stderr)\n")
    (tmp_path / "plain.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "kl.py").write_text("def loss_fn(logp, ref_logp, beta):\n"
                                    "    return beta * (logp - ref_logp).mean()\n")

    def loaded(*args):
        p = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True)
        return p.stderr.strip().splitlines()[-1]

    assert loaded("check", "plain.py", "--no-cache") == "[]"
    assert loaded("check", "kl.py", "--no-cache") == "['libcst', 'sympy']"
    loaded("check", "kl.py")  # prime the cache
    (tmp_path / "kl.py").write_text((tmp_path / "kl.py").read_text() + "\n# edited\n")
    assert "sympy" not in loaded("check", "kl.py")


def test_prefilter_is_case_insensitive():
    from klaudit import prefilter
    from klaudit.vocabulary import mentions_kl_words

    assert prefilter.candidate(b"x = compute_KL(a, b)\n")
    assert prefilter.candidate(b"loss = Divergence()(p, q)\n")
    assert prefilter.candidate(b"d = policy_LogProbs - REF_LogProbs\n")
    assert not prefilter.candidate(b"d = policy_LogProbs - other\n")
    assert not prefilter.candidate(b"buckle = 1\n")  # "kl" inside a word is not a KL
    assert mentions_kl_words(b"LOG_SOFTMAX") and mentions_kl_words(b"Klass") and not mentions_kl_words(b"import os")

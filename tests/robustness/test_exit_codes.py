"""Exit codes, as README.md documents them: 0 no findings, 1 findings, 2 a file could not be analysed
(errors are listed and every other file is still linted); --exit-zero turns 1 into 0."""
import os
import re

import pytest

from rb_helpers import CLEAN_CODE, KL_CODE, ROOT, check_json, errors_by_path, findings_by_path

BROKEN = "def kl_loss(logp, ref_logp:\n    return logp - ref_logp\n"


def test_the_contract_is_the_documented_one():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = " ".join(fh.read().split())
    assert re.search(r"Exit codes: 0 no findings, 1 findings, 2 a file could not be analysed, a bad configuration "
                     r"or a usage error \(errors are listed and every other file is still linted\)\. "
                     r"`--exit-zero` turns 1 into 0\.", readme)


@pytest.mark.parametrize("files, extra, code", [
    ({"clean.py": CLEAN_CODE}, [], 0),
    ({"bad.py": KL_CODE}, [], 1),
    ({"bad.py": KL_CODE}, ["--exit-zero"], 0),
    ({"broken.py": BROKEN}, [], 2),
    ({"broken.py": BROKEN, "clean.py": CLEAN_CODE}, [], 2),
    ({"broken.py": BROKEN, "bad.py": KL_CODE}, [], 2),
    ({"broken.py": BROKEN, "bad.py": KL_CODE}, ["--exit-zero"], 2),
], ids=["clean", "findings", "findings-exit-zero", "errors-only", "errors-and-clean", "findings-and-errors",
        "findings-and-errors-exit-zero"])
def test_exit_code(tmp_path, files, extra, code):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    rc, doc, _ = check_json(str(tmp_path), "--no-cache", *extra)
    assert rc == code
    # the report says why: findings for bad.py, one error for broken.py, nothing for clean.py
    assert set(findings_by_path(doc)) == ({str(tmp_path / "bad.py")} if "bad.py" in files else set())
    assert errors_by_path(doc) == ({str(tmp_path / "broken.py"): [doc["errors"][0]["message"]]}
                                   if "broken.py" in files else {})

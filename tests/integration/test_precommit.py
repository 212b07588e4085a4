"""The pre-commit hook, run by the real `pre-commit try-repo` on a throwaway git repository.

pre-commit builds the hook's environment by pip-installing this repository from a git commit.  So that
the test checks the working tree as it is (committed or not, new files included), it copies the files
git would see (tracked and untracked-but-not-ignored) into a fresh repository, commits them there, and
points `try-repo` at that commit.  Slow (it installs klaudit and its dependencies from the package
registry into a new virtualenv): marked `slow`, deselect with `-m "not slow"`.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from kl_helpers import BAD, GOOD, ROOT

GIT_ENV = {"GIT_AUTHOR_NAME": "klaudit-test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "klaudit-test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1"}


def git(*args, cwd):
    env = dict(os.environ, **GIT_ENV, HOME=str(cwd))
    p = subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args], cwd=cwd,
                       env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_hook_definition_matches_the_contract():
    (hook,) = yaml.safe_load(open(os.path.join(ROOT, ".pre-commit-hooks.yaml"), encoding="utf-8"))
    assert hook["id"] == "klaudit"
    assert hook["language"] == "python"
    assert hook["types_or"] == ["python", "jupyter"]
    assert hook["require_serial"] is True
    assert hook["entry"].split()[0] == "klaudit"


def snapshot_of_the_working_tree(dest):
    """A git repository holding this working tree's files as one commit."""
    files = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src) or rel.startswith(".git/"):
            continue  # deleted in the working tree, or a submodule
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel))
    git("init", "-q", ".", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "snapshot", cwd=dest)
    return dest


def notebook_source(code):
    return json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                                  "source": code.splitlines(True)}],
                       "metadata": {"language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5},
                      indent=1)


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory):
    return snapshot_of_the_working_tree(str(tmp_path_factory.mktemp("klaudit-hook-repo")))


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pre-commit-home"))


@pytest.fixture
def user_repo(tmp_path):
    (tmp_path / "bad_train.py").write_text(BAD)
    (tmp_path / "good_train.py").write_text(GOOD)
    (tmp_path / "bad_notebook.ipynb").write_text(notebook_source(BAD))
    git("init", "-q", ".", cwd=tmp_path)
    git("add", "-A", cwd=tmp_path)
    return tmp_path


def try_repo(hook_repo, pre_commit_home, user_repo, *files):
    env = dict(os.environ, PRE_COMMIT_HOME=pre_commit_home, **GIT_ENV)
    env.pop("KLAUDIT_OUTPUT_FORMAT", None)
    p = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", hook_repo, "klaudit", "--files", *files],
                       cwd=user_repo, env=env, capture_output=True, text=True, timeout=900)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.slow
def test_pre_commit_fails_on_the_bad_file_and_passes_on_the_good(hook_repo, pre_commit_home, user_repo):
    rc, out = try_repo(hook_repo, pre_commit_home, user_repo, "bad_train.py")
    assert rc == 1, out
    assert "klaudit" in out and "Failed" in out
    assert "bad_train.py:4:10: KL102 " in out

    rc, out = try_repo(hook_repo, pre_commit_home, user_repo, "good_train.py")
    assert rc == 0, out
    assert "Passed" in out

    # types_or: [python, jupyter] -- notebooks are checked too
    rc, out = try_repo(hook_repo, pre_commit_home, user_repo, "bad_notebook.ipynb")
    assert rc == 1, out
    assert "bad_notebook.ipynb:cell 1:4:10: KL102 " in out

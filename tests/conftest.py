import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fixtures_dir():
    return FIXTURES


def run_paths(paths, **cfg_over):
    from klaudit import engine
    from klaudit.config import Config

    cfg = Config(root=ROOT)
    cfg.preview = True
    for k, v in cfg_over.items():
        setattr(cfg, k, v)
    return engine.run(paths, cfg)

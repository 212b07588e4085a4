"""Every rule code has a doc and every doc a code; codes and names are unique and well-formed."""
import re

from klaudit import ruledocs
from klaudit.rules.registry import BY_CODE, BY_NAME, RULES, expand, lookup

SECTIONS = ("what it flags", "why", "example", "use instead", "fix", "references")


def test_codes_and_names_unique_and_wellformed():
    assert len(BY_CODE) == len(RULES) == len(BY_NAME)
    for r in RULES:
        assert re.fullmatch(r"KL[1-9]\d\d", r.code)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name)
        assert r.severity in ("critical", "high", "medium", "low", "info")


def test_every_code_has_a_doc_and_every_doc_a_code():
    docs = ruledocs.all_docs()
    assert set(docs) == set(BY_CODE)


def test_docs_have_the_sections():
    for code, path in ruledocs.all_docs().items():
        text = open(path, encoding="utf-8").read()
        assert text.startswith(f"# {code} {BY_CODE[code].name}"), path
        heads = [h.lower() for h in re.findall(r"^## (.+)$", text, re.M)]
        for s in SECTIONS:
            assert any(h.startswith(s) for h in heads), f"{path} lacks a '{s}' section"


def test_lookup_by_code_name_and_prefix():
    assert lookup("kl102").code == "KL102"
    assert lookup("k3-as-loss").code == "KL102"
    assert expand(["KL1"]) >= {"KL101", "KL102", "KL103"}

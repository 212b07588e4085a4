"""Where an option's shipped default is set: dataclass fields, argparse defaults, ``.get`` defaults
and YAML/Hydra/OmegaConf files of the linted tree.

A config key is the dotted path read in code after the config root (``self.config.algorithm.
kl_penalty`` -> ``algorithm.kl_penalty``; ``args.kl_estimator`` -> ``kl_estimator``).  It matches a
YAML key whose dotted path ends with it, an argparse destination equal to it, or a dataclass field
named like its last component.  YAML files are parsed lazily: only those mentioning a key that is
asked for.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Tuple

from ..extract.summary import ConfigDefault

_SOURCE_RANK = {"literal": 0, "argparse": 1, "dataclass": 2, "yaml": 3, "get": 4, "getattr": 4, "param": 5}


def _yaml_rank(path: str) -> int:
    p = path.replace("\\", "/").lower()
    r = 0
    if "/config" not in p and "/conf/" not in p:
        r += 2
    if any(w in p for w in ("example", "test", "recipe", "benchmark", "/docs/", "tutorial", "scripts/")):
        r += 4
    if "generated" in p:
        r += 1
    return r


class ConfigIndex:
    def __init__(self, defaults: Iterable[ConfigDefault], yaml_paths: Iterable[str] = ()):
        self.by_last: Dict[str, List[ConfigDefault]] = {}
        self.by_full: Dict[str, List[ConfigDefault]] = {}
        for d in defaults:
            self.by_full.setdefault(d.key, []).append(d)
            self.by_last.setdefault(d.key.rsplit(".", 1)[-1], []).append(d)
        self.yaml_paths = sorted(yaml_paths)
        self._yaml_texts: Dict[str, Optional[str]] = {}
        self._yaml_parsed: Dict[str, List[Tuple[str, object, int]]] = {}
        self._memo: Dict[str, Optional[ConfigDefault]] = {}

    # ------------------------------------------------------------------------------------- YAML
    def _text(self, path: str) -> Optional[str]:
        if path not in self._yaml_texts:
            try:
                if os.path.getsize(path) > 2_000_000:
                    self._yaml_texts[path] = None
                else:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        self._yaml_texts[path] = fh.read()
            except OSError:
                self._yaml_texts[path] = None
        return self._yaml_texts[path]

    def _parse(self, path: str) -> List[Tuple[str, object, int]]:
        if path in self._yaml_parsed:
            return self._yaml_parsed[path]
        out: List[Tuple[str, object, int]] = []
        text = self._text(path)
        if text is not None:
            try:
                import yaml

                for doc in yaml.compose_all(text, Loader=yaml.SafeLoader):
                    if doc is not None:
                        _walk_yaml(doc, [], out)
            except Exception:
                out = []
        self._yaml_parsed[path] = out
        return out

    def _yaml_matches(self, key: str) -> List[ConfigDefault]:
        last = key.rsplit(".", 1)[-1]
        parts = key.split(".")
        hits = []
        for p in self.yaml_paths:
            t = self._text(p)
            if t is None or last not in t:
                continue
            for dotted, value, line in self._parse(p):
                dp = dotted.split(".")
                if len(dp) >= len(parts) and dp[len(dp) - len(parts):] == parts:
                    hits.append(ConfigDefault(dotted, value, p, line, "yaml"))
        return hits

    # ------------------------------------------------------------------------------------ lookup
    def lookup(self, key: str, near: str = "") -> Optional[ConfigDefault]:
        """The default for ``key``; ``near`` (a file path) breaks ties toward the same package."""
        mk = f"{key}|{os.path.dirname(near)}"
        if mk in self._memo:
            return self._memo[mk]
        cands: List[ConfigDefault] = []
        cands += [d for d in self.by_full.get(key, []) if d.source in ("argparse", "get", "getattr")]
        last = key.rsplit(".", 1)[-1]
        cands += [d for d in self.by_last.get(last, []) if d.source == "dataclass"]
        if "." in key:
            cands += [d for d in self.by_full.get(last, []) if d.source in ("argparse", "get", "getattr")]
        cands += self._yaml_matches(key)
        cands = [c for c in cands if _usable(c.value)]
        best = None
        if cands:
            def rank(c: ConfigDefault):
                r = _SOURCE_RANK.get(c.source, 9)
                if c.source == "yaml":
                    r += _yaml_rank(c.path)
                return (r, _distance(c.path, near), c.path, c.line)

            cands.sort(key=rank)
            best = cands[0]
        self._memo[mk] = best
        return best


def _usable(v: object) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _distance(a: str, b: str) -> int:
    if not b:
        return 0
    pa = os.path.normpath(a).split(os.sep)
    pb = os.path.normpath(b).split(os.sep)
    common = 0
    for x, y in zip(pa, pb):
        if x != y:
            break
        common += 1
    return len(pa) + len(pb) - 2 * common


def _walk_yaml(node, prefix: List[str], out: List[Tuple[str, object, int]]) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                _walk_yaml(v, prefix + [str(k.value)], out)
    elif isinstance(node, yaml.ScalarNode) and prefix:
        out.append((".".join(prefix), _scalar(node), node.start_mark.line + 1))


_CONSTRUCTOR = None


def _scalar(node) -> object:
    global _CONSTRUCTOR
    import yaml

    if _CONSTRUCTOR is None:
        _CONSTRUCTOR = yaml.constructor.SafeConstructor()
    try:
        return _CONSTRUCTOR.construct_object(node)
    except Exception:
        return node.value

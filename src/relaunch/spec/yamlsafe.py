"""YAML parsing bounded for documents from anyone: nesting depth is limited while the
text is scanned (PyYAML's scanner takes quadratic time in the depth — 50,000 ``[`` take
seconds — and its composer recurses), and expanded size is checked after (aliases).
A key given twice in one mapping is refused (PyYAML keeps the last one silently)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode
from yaml.scanner import ScannerError

MAX_DEPTH = 64


class DuplicateKeyError(ConstructorError):
    """A mapping names the same key twice; ``key`` is it, ``problem`` says where."""

    def __init__(self, key: str, first: int, second: int, mark: Any) -> None:
        self.key = key
        lines = f"line {first}" if first == second else f"lines {first} and {second}"
        super().__init__(None, None, f"duplicate key '{key}' ({lines})", mark)


class _BoundedLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Only the mapping's own keys: a merge (``<<: *base``) may override on purpose.
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:  # an unhashable key: the constructor refuses it below
                continue
            if first is not None:
                raise DuplicateKeyError(str(key), first, line, key_node.start_mark)
        return dict(super().construct_mapping(node, deep=deep))

    def _too_deep(self) -> ScannerError:
        return ScannerError(
            None, None, f"the document nests deeper than {MAX_DEPTH} levels", self.get_mark()
        )

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise self._too_deep()
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= MAX_DEPTH:
            raise self._too_deep()
        return bool(super().add_indent(column))


def load(text: str) -> Any:
    """``yaml.safe_load`` with nesting bounded to MAX_DEPTH (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=_BoundedLoader)

"""YAML parsing bounded for documents from anyone: nesting depth is limited while the
text is scanned (PyYAML's scanner takes quadratic time in the depth — 50,000 ``[`` take
seconds — and its composer recurses), and expanded size is checked after (aliases)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.scanner import ScannerError

MAX_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
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

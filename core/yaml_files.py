"""Files people write (campaigns, segment rules and their SQL, KPI targets, topics): UTF-8
text, the YAML among them read as safe YAML, with a key given twice in one mapping refused.
PyYAML keeps the last silently, so a campaign with `send_time` twice loaded, its first value
gone unsaid."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode


class YamlFileError(ValueError):
    """Why a file cannot be read as text or as YAML (the caller names the file)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                break  # PyYAML's own reading refuses it ("found unhashable key")
            if key in seen:
                raise ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_text(path: Path) -> str:
    """The file's text, or YamlFileError: not UTF-8 (a GB18030 save, say), or not readable."""
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise YamlFileError(f"cannot read as UTF-8 text: {exc}") from None


def read_yaml(path: Path) -> Any:
    """The file's YAML, or YamlFileError: not text (``read_text``), not YAML, or a key given
    twice."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"invalid YAML: {exc}") from None

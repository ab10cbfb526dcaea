"""Reading a YAML file safely: bounded in size, nesting, aliases and integers, strict about
duplicate keys, encoding and control characters.

Every limit fails with a clear message that names the line, so that no input file (however
broken or hostile) ends in a traceback or takes more than a moment: a ten-level alias bomb
or 100,000 nested brackets are refused while they are being read, not after.

libyaml's C parser produces the events (fast, and it stops as soon as the composer stops
asking); the composer and constructor are PyYAML's own, in Python, with the checks added.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import Resolver

try:  # libyaml's parser (Debian's python3-yaml and PyPI's wheels both carry it)
    from yaml._yaml import CParser as _Parser

    def _parser_init(loader: Any, text: str) -> None:
        _Parser.__init__(loader, text)
except ImportError:  # pragma: no cover - pure-Python fallback, slower but just as bounded
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        pass

    def _parser_init(loader: Any, text: str) -> None:
        Reader.__init__(loader, text)
        Scanner.__init__(loader)
        Parser.__init__(loader)

MAX_BYTES = 1024 * 1024  # a lab file is a few kilobytes
MAX_DEPTH = 64  # mappings and lists inside each other
MAX_NODES = 50_000  # values written in the file
MAX_ALIASES = 1_000  # uses of *alias
MAX_EXPANDED = 100_000  # values once every alias is expanded (stops alias bombs)
MAX_INT_DIGITS = 30  # an integer's text; lab values are far smaller
MERGE_TAG = "tag:yaml.org,2002:merge"
# what YAML 1.1 allows in a file (the rest are control characters)
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd"
                            "\U00010000-\U0010ffff]")


class Refused(yaml.MarkedYAMLError):
    """A limit of this loader was reached, at the mark's line."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


@dataclass
class Found:
    """A problem the constructor found in one value (the value's node, the message)."""

    node: Node
    message: str


@dataclass
class _Limits:
    depth: int = 0
    nodes: int = 0
    aliases: int = 0
    expanded: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # id(node) -> expanded size


class BoundedLoader(Composer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """PyYAML's safe loader with limits on nesting, values and aliases (while composing)
    and checks for duplicate keys and huge integers (while constructing)."""

    def __init__(self, text: str) -> None:
        _parser_init(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.limits = _Limits()
        self.found: list[Found] = []

    # --- composing: the node tree, bounded --------------------------------------------
    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        lim = self.limits
        lim.depth += 1
        lim.nodes += 1
        lim.expanded += 1
        before = lim.expanded - 1
        if lim.depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        if lim.nodes > MAX_NODES:
            raise Refused(f"more than {MAX_NODES} values in one file", event.start_mark)
        node = super().compose_node(parent, index)
        lim.sizes[id(node)] = lim.expanded - before
        lim.depth -= 1
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # Composer reports the undefined alias
        size = self.limits.sizes.get(id(target))
        if size is None:
            raise Refused(f"alias *{event.anchor} refers to a value that contains it",
                          event.start_mark)
        lim = self.limits
        lim.aliases += 1
        lim.expanded += size
        if lim.aliases > MAX_ALIASES:
            raise Refused(f"more than {MAX_ALIASES} aliases", event.start_mark)
        if lim.expanded > MAX_EXPANDED:
            raise Refused(f"aliases expand to more than {MAX_EXPANDED} values",
                          event.start_mark)

    # --- constructing: the data, checked ----------------------------------------------
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:  # e.g. a date such as 2026-13-45
            raise ConstructorError(None, None, f"cannot read this value: {e}",
                                   node.start_mark) from None

    def construct_mapping(self, node: Node, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            self._find_duplicates(node)
        return super().construct_mapping(node, deep)

    def _find_duplicates(self, node: MappingNode) -> None:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                seen = first.setdefault(key, line)
            except TypeError:
                continue  # unhashable: the base constructor says so
            if seen != line:
                self.found.append(Found(key_node, f"duplicate key '{key}' (first at line "
                                                  f"{seen}): one of them would be lost"))

    def construct_yaml_int(self, node: ScalarNode) -> int:
        digits = node.value.replace("_", "").lstrip("+-")
        if len(digits) > MAX_INT_DIGITS:
            self.found.append(Found(node, f"integer of {len(digits)} characters: at most "
                                          f"{MAX_INT_DIGITS}"))
            return 0
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


@dataclass
class Bad:
    """Text that is not YAML at all: the line and column (1-based) and what is wrong."""

    line: int
    column: int
    message: str


def read_limited(path: Path, limit: int = MAX_BYTES) -> bytes | None:
    """The file's bytes, or None when it is larger than ``limit`` (never more is read);
    OSError as the file system raises it."""
    with path.open("rb") as f:
        raw = f.read(limit + 1)
    return None if len(raw) > limit else raw


def decode(raw: bytes) -> str | Bad:
    """The file's text, or where it stops being UTF-8 text YAML accepts."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return Bad(line, column, f"not UTF-8 text: byte 0x{raw[e.start]:02x} at column "
                                 f"{column}")
    m = _NOT_PRINTABLE.search(text)
    if m is None:
        return text
    line = text.count("\n", 0, m.start()) + 1
    column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    code = ord(m.group())
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return Bad(line, column, f"control character U+{code:04X} at column {column}: not "
                             f"allowed in YAML (inside double quotes write it as \"{escape}\")")


def compose(text: str) -> tuple[Node | None, BoundedLoader]:
    """The node tree of a single-document text (None when empty), bounded; the loader
    goes on to construct the data."""
    loader = BoundedLoader(text)
    return loader.get_single_node(), loader


def construct(loader: BoundedLoader, node: Node | None) -> tuple[Any, list[Found]]:
    """The data of a composed tree, and the problems found in its values."""
    try:
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, loader.found


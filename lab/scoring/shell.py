"""Reading a shell line as bash would: which simple commands it runs, with their words.

The parser is tree-sitter's bash grammar (the ``tree-sitter-bash`` package): it covers
the whole language (pipelines, lists, loops, ``case``, functions, subshells, ``$(...)``,
process substitution, here-documents) and never gives up on a line: a typo such as an
unbalanced quote yields a tree with an error node, and the commands around it are still
found. (bashlex, the other Python bash parser, raises on ``case`` and ``time`` and on any
syntax error.)

``simple_commands(script)`` returns each simple command as a list of words; a word whose
value is only known at run time (``$HOST``, ``$(...)``) is None. A ``for`` loop over a
literal list is unrolled, so that ``for h in 10.1.0.25 10.1.0.53; do ping -c1 $h; done``
gives one ``ping`` per address.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

Words = list[str | None]
MAX_UNROLL = 16  # values of one for loop that are unrolled
_LOOP_LIST_SKIP = {"for", "in", ";", "variable_name", "do_group", "\n"}


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bash.language()))


def simple_commands(script: str) -> list[Words]:
    """The simple commands of ``script`` in the order they appear (a command
    substitution's command comes before the command that uses its output)."""
    tree = _parser().parse(script.encode())
    return list(_walk(tree.root_node, {}))


def _walk(node: Node, env: dict[str, str]) -> Iterator[Words]:
    if node.type == "command":
        yield from _command(node, env)
    elif node.type == "for_statement":
        yield from _for(node, env)
    else:
        for child in node.named_children:
            yield from _walk(child, env)


def _command(node: Node, env: dict[str, str]) -> Iterator[Words]:
    words: Words = []
    for child in node.named_children:
        yield from _inner(child, env)  # $(...) and <(...) inside the words run first
        if child.type == "command_name":
            words.append(word_value(child.named_children[0], env)
                         if child.named_children else None)
        elif words and child.type not in ("file_redirect", "herestring_redirect",
                                          "heredoc_redirect", "variable_assignment"):
            words.append(word_value(child, env))
    if words:
        yield words


def _inner(node: Node, env: dict[str, str]) -> Iterator[Words]:
    """Commands nested in a word: command and process substitutions."""
    if node.type in ("command_substitution", "process_substitution"):
        for child in node.named_children:
            yield from _walk(child, env)
        return
    for child in node.named_children:
        yield from _inner(child, env)


def _for(node: Node, env: dict[str, str]) -> Iterator[Words]:
    var = node.child_by_field_name("variable")
    body = node.child_by_field_name("body")
    items = [c for c in node.named_children if c.type not in _LOOP_LIST_SKIP and c != var]
    values = [word_value(c, env) for c in items]
    for item in items:
        yield from _inner(item, env)
    if body is None:
        return
    known = [v for v in values if v is not None][:MAX_UNROLL]
    if var is None or not known:
        yield from _walk(body, env)
        return
    for value in known:
        yield from _walk(body, {**env, _text(var): value})


def word_value(node: Node, env: dict[str, str]) -> str | None:
    """The literal value of a word, or None if it depends on run time."""
    kind = node.type
    if kind in ("word", "number"):
        return _unescape(_text(node))
    if kind == "raw_string":
        return _text(node)[1:-1]
    if kind == "ansi_c_string":
        return _text(node)[2:-1]
    if kind in ("simple_expansion", "expansion"):
        names = [c for c in node.named_children if c.type == "variable_name"]
        simple = len(node.named_children) == 1 and names
        return env.get(_text(names[0])) if simple else None
    if kind in ("string", "concatenation"):
        parts = [word_value(c, env) if c.type != "string_content" else _text(c)
                 for c in node.named_children]
        return None if None in parts else "".join(p for p in parts if p is not None)
    return None


def _unescape(text: str) -> str:
    out, escaped = [], False
    for ch in text:
        if ch == "\\" and not escaped:
            escaped = True
            continue
        out.append(ch)
        escaped = False
    return "".join(out)


def _text(node: Node) -> str:
    return (node.text or b"").decode(errors="replace")

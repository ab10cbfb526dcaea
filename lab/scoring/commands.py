"""What a recorded command ran: the programs, with their arguments, behind wrappers.

A recorded command is either a typed shell line (`lab shell`, kept as typed), an argv
(`lab exec NODE -- ...`, a playbook's ``run:`` step) or a playbook's built-in probe
(``python -m lab.playbooks.probe KIND ARGS``). ``invocations`` turns each into the
programs it ran: shell syntax is parsed (lab/scoring/shell.py), wrappers are looked
through (``sudo``, ``env``, ``timeout``, ``nice``, ``xargs``...), ``sh -c SCRIPT``,
``watch CMD`` and ``eval`` have their script parsed in turn, and a probe counts as the
tool it stands for (``dns`` as dig, ``tcp`` as nc, ``smtp`` as swaks, ``ping`` as ping,
``arp`` as arping). Shell keywords, builtins and arguments are never programs.
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass

from lab.scoring.shell import Words, simple_commands

SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh", "busybox"}
# builtins and keywords of bash that are not programs a trainee uses to look at the lab
BUILTINS = {
    ".", ":", "[", "[[", "alias", "bg", "break", "builtin", "cd", "command", "continue",
    "declare", "dirs", "echo", "eval", "exec", "exit", "export", "false", "fg", "getopts",
    "hash", "help", "history", "jobs", "kill", "let", "local", "logout", "popd", "printf",
    "pushd", "pwd", "read", "readonly", "return", "set", "shift", "shopt", "source", "test",
    "times", "trap", "true", "type", "typeset", "ulimit", "umask", "unalias", "unset", "wait",
}
# wrapper -> options that take a value (the wrapped command follows the options)
WRAPPERS: dict[str, set[str]] = {
    "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"},
    "env": {"-u", "-C", "-S", "--unset", "--chdir", "--split-string"},
    "timeout": {"-s", "-k", "--signal", "--kill-after"},
    "nice": {"-n", "--adjustment"},
    "ionice": {"-c", "-n", "-p", "-P", "-u"},
    "stdbuf": {"-i", "-o", "-e", "--input", "--output", "--error"},
    "time": {"-f", "-o", "--format", "--output"},
    "xargs": {"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file", "--delimiter",
              "--max-args", "--max-procs", "--max-chars", "--replace"},
    "nohup": set(), "setsid": set(), "command": set(), "exec": {"-a"}, "builtin": set(),
    "unbuffer": set(), "chronic": set(), "torsocks": set(),
}
SCRIPT_RUNNERS = {"watch": {"-n", "-d", "-g", "--interval", "--differences"}}
# a built-in probe of lab/playbooks/probe.py and the tool it stands for
PROBE_TOOLS = {"dns": "dig", "tcp": "nc", "smtp": "swaks", "ping": "ping", "arp": "arping"}
PROBE_MODULE = "lab.playbooks.probe"
MAX_DEPTH = 4  # sh -c "sh -c '...'" nesting followed


@dataclass(frozen=True)
class Invocation:
    """One program run: its name (no directory), its literal arguments (None where the
    shell only knows the value at run time), and what stood for it (a playbook probe)."""

    program: str
    args: tuple[str | None, ...] = ()
    via: str = ""


def invocations(argv: list[str], line: str | None = None) -> list[Invocation]:
    """The programs a recorded command ran, in order. ``line`` is the shell line as
    typed when there is one; else ``argv`` is run as it is (or, for records that kept
    only a typed line's words, rejoined when it holds shell syntax)."""
    if line is not None:
        return _script(line, 0)
    probe = _probe(argv)
    if probe is not None:
        return [probe]
    if _has_shell_syntax(argv):
        return _script(" ".join(_requote(w) for w in argv), 0)
    return _words(list(argv), 0)


def _script(text: str, depth: int) -> list[Invocation]:
    if depth > MAX_DEPTH:
        return []
    return [inv for words in simple_commands(text) for inv in _words(words, depth)]


def _words(words: Words, depth: int) -> list[Invocation]:
    """Look through wrappers to the program; a shell's -c script is parsed in turn."""
    while words:
        head = words[0]
        if head is None:
            return []
        name = os.path.basename(head)
        rest = words[1:]
        if "=" in head and not head.startswith("="):  # env VAR=value cmd
            words = rest
        elif name in WRAPPERS:
            words = _after_options(rest, WRAPPERS[name], numeric_first=name == "timeout")
        elif name in SCRIPT_RUNNERS or name == "eval":
            args = _after_options(rest, SCRIPT_RUNNERS.get(name, set()))
            return _script(" ".join(w for w in args if w is not None), depth + 1)
        elif name in SHELLS:
            return _shell(rest, depth)
        elif name in BUILTINS or not name:
            return []
        else:
            return [Invocation(name, tuple(rest))]
    return []


def _after_options(words: Words, with_value: set[str], numeric_first: bool = False) -> Words:
    """The words after a wrapper's own options (and, for timeout, its duration)."""
    i = 0
    while i < len(words):
        w = words[i]
        if w == "--":
            i += 1
            break
        if w is None or not w.startswith("-") or w == "-":
            break
        i += 2 if w in with_value else 1
    if numeric_first and i < len(words):
        i += 1  # timeout's DURATION
    return words[i:]


def _shell(args: Words, depth: int) -> list[Invocation]:
    """``sh -c SCRIPT`` (any option cluster holding c): the script's programs."""
    for i, w in enumerate(args):
        if w is None or not w.startswith("-"):
            break
        if "c" in w[1:] and not w.startswith("--"):
            script = args[i + 1] if i + 1 < len(args) else None
            return _script(script, depth + 1) if script else []
    return [Invocation(os.path.basename(args[0]), tuple(args[1:]))] \
        if args and args[0] and not args[0].startswith("-") else []


def _probe(argv: list[str]) -> Invocation | None:
    """A playbook's built-in probe, as the command it stands for."""
    if len(argv) != 5 or argv[1:3] != ["-m", PROBE_MODULE] or argv[3] not in PROBE_TOOLS:
        return None
    kind = argv[3]
    try:
        args = json.loads(argv[4])
    except ValueError:
        args = {}
    if not isinstance(args, dict):
        args = {}
    return Invocation(PROBE_TOOLS[kind], tuple(_probe_args(kind, args)), via=f"{kind} probe")


def _probe_args(kind: str, args: dict) -> list[str]:
    if kind == "dns":
        server = [f"@{args['server']}"] if args.get("server") else []
        return [*server, str(args.get("name", "")), str(args.get("type", "A"))]
    host = str(args.get("host", ""))
    if kind == "smtp":
        return ["--server", f"{host}:{args.get('port', 25)}"]
    if kind == "tcp":
        return ["-z", host, str(args.get("port", ""))]
    return [host]


_OPERATORS = {"|", "||", "&&", ";", "&", ";;", "(", ")", "{", "}", "!", "|&"}
_KEYWORDS = {"for", "while", "until", "if", "case", "select", "function", "[[", "time"}


def _has_shell_syntax(argv: list[str]) -> bool:
    """Does this word list look like a typed line split into words (older records)? A
    word with blanks in it is one argument (a quoted string, a ``sh -c`` script)."""
    if not argv:
        return False
    if argv[0] in _KEYWORDS:
        return True
    return any(w in _OPERATORS or w.endswith(";") or "$(" in w or "`" in w
               or w[:1] in "<>" or w[:2] in ("2>", "1>")
               for w in argv if w and not any(ch.isspace() for ch in w))


def _requote(word: str) -> str:
    """A word of a split line back into shell text: words that held blanks were quoted."""
    if not any(ch.isspace() for ch in word):
        return word
    if "$" in word:
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return shlex.quote(word)

"""Loading YAML files so that every validation error names the file, the line and the field.

PyYAML's composed node tree carries line marks; we index it by the same path pydantic
uses in its error locations (mapping keys and list indexes), then map each error to the
closest line we know.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lab.errors import LabError
from lab.model import yamlload

Loc = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)


class Pos(NamedTuple):
    """Where a field was written when that is not plainly the file being loaded: laid over
    it from a variant of the same file (``path`` None) or from another file (a scenario's
    ``overrides``); ``prefix`` is the field's path in the file it was written in."""

    line: int
    path: Path | None = None
    prefix: Loc = ()


Line = int | Pos | None
Lines = dict[Loc, int | Pos]
Problem = tuple[Line, str, str]  # line, field, message


class FileError(LabError):
    """A file that does not load: every problem in it, each with its line and field."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        lines = [_format_problem(path, *p) for p in problems]
        count = f"{len(problems)} error{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"{path}: {count}\n" + "\n".join(lines),
            hint="fix the listed fields; nothing was built",
        )


def _format_problem(path: Path, line: Line, field: str, message: str) -> str:
    if isinstance(line, Pos):
        path, line = line.path or path, line.line
    where = f"{path}:{line}" if line else str(path)
    return f"  {where}: {field}: {message}" if field else f"  {where}: {message}"


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems in file order (another file's after this one's), each once."""
    def key(p: Problem) -> tuple:
        line = p[0]
        if isinstance(line, Pos):
            return (1, str(line.path), line.line, p[1], p[2])
        return (0, "", line or 0, p[1], p[2])
    return sorted(set(problems), key=key)


def _index_lines(node: yaml.Node, loc: Loc, out: Lines, where: dict[int, Loc]) -> None:
    """``out``: the line of every field path; ``where``: the first path of every node."""
    out.setdefault(loc, node.start_mark.line + 1)
    where.setdefault(id(node), loc)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            out.setdefault(loc + (name,), key.start_mark.line + 1)
            where.setdefault(id(key), loc + (name,))
            _index_lines(value, loc + (name,), out, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), out, where)


def _syntax_error(path: Path, line: int | None, message: str) -> FileError:
    return FileError(path, [(line, "", f"YAML: {message}")])


def read_yaml(path: Path) -> tuple[Any, Lines]:
    """The file's data and a map from field path to line number; a FileError (with the
    line) for anything that is not a readable, reasonable YAML file."""
    try:
        raw = yamlload.read_limited(path)
    except OSError as e:
        raise LabError(f"cannot read {path}: {e.strerror or e}") from None
    if raw is None:
        raise _syntax_error(path, None, f"the file is larger than {yamlload.MAX_BYTES} bytes")
    text = yamlload.decode(raw)
    if isinstance(text, yamlload.Bad):
        raise _syntax_error(path, text.line, text.message)
    try:
        node, loader = yamlload.compose(text)
        lines: Lines = {}
        where: dict[int, Loc] = {}
        if node is not None:
            _index_lines(node, (), lines, where)
        data, found = yamlload.construct(loader, node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise _syntax_error(path, line, _yaml_message(e)) from None
    except yaml.YAMLError as e:
        raise _syntax_error(path, None, str(e).splitlines()[0]) from None
    if found:
        rows = [(f.node.start_mark.line + 1, field_name(where.get(id(f.node), ())), f.message)
                for f in found]
        raise FileError(path, sort_problems(rows))
    return data, lines


def _yaml_message(e: yaml.MarkedYAMLError) -> str:
    text = e.problem or str(e)
    if e.context and e.problem:
        text = f"{e.context}: {text}"
    return text


def line_for(lines: Lines, loc: Loc) -> Line:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def field_name(loc: Loc) -> str:
    """``nodes.fw.interfaces[0]``; a key that is empty or holds blanks or control
    characters is quoted (``nodes.'fw\\n'``), so that it can be seen."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if not text or any(c.isspace() or not c.isprintable() for c in text):
            text = repr(text)
        out += ("." if out else "") + text
    return out


def row(lines: Lines, loc: Loc, message: str, context: str = "") -> Problem:
    """One problem at a field: its line, the field as written where that line is, and the
    message (after ``context`` when the field is the loaded file's own)."""
    pos = line_for(lines, loc)
    if isinstance(pos, Pos):
        return (pos if pos.path else pos.line), field_name(pos.prefix + loc), message
    return pos, field_name(loc), context + message


def problems_from(error: ValidationError, lines: Lines, context: str = "") -> list[Problem]:
    problems = []
    for err in error.errors():
        # pydantic puts union/function-validator tags into loc; drop the non-field parts
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        problems.append(row(lines, loc, message, context))
    return sort_problems(problems)


def load_checked(path: Path, model: type[M]) -> M:
    """Validate a YAML file against a model, then run the model's own cross-field
    ``problems()``; raise FileError listing every problem with its line and field."""
    data, lines = read_yaml(path)
    return validate(path, model, data, lines)


def validate(path: Path, model: type[M], data: Any, lines: Lines, context: str = "") -> M:
    """``data`` (read from ``path``, perhaps with layers laid over it) as a ``model``, or a
    FileError with every problem; ``context`` starts the messages about fields that are
    the file's own (e.g. "with variant 'x': ")."""
    if not isinstance(data, dict):
        raise FileError(path, [(1, "", "expected a mapping at the top level")])
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        rows = problems_from(e, lines, context)
        rows += _cross_checks_of_the_rest(model, data, e, lines, context)
        raise FileError(path, sort_problems(rows)) from None
    found = _cross_checks(obj)
    if found:
        raise FileError(path, sort_problems(row(lines, loc, msg, context) for loc, msg in found))
    return obj


def _cross_checks(obj: BaseModel) -> list[tuple[Loc, str]]:
    checks = getattr(obj, "problems", None)
    return checks() if checks else []


def _cross_checks_of_the_rest(model: type[M], data: dict, error: ValidationError,
                              lines: Lines, context: str) -> list[Problem]:
    """So that a file's mistakes are all shown at once: drop the entries that failed
    schema validation (``nodes.fw`` for an error anywhere inside fw), validate what is
    left, and run the cross-field checks on it. Problems naming a dropped entry are left
    out: they would only echo the schema errors."""
    dropped: set[Loc] = {tuple(err["loc"][:2]) for err in error.errors() if len(err["loc"]) >= 2}
    if not dropped:
        return []
    rest = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for top, key in dropped:
        if isinstance(rest.get(top), dict):
            rest[top].pop(key, None)
    try:
        obj = model.model_validate(rest)
    except ValidationError:
        return []
    names = {f"'{key}'" for _, key in dropped}
    return [row(lines, loc, msg, context) for loc, msg in _cross_checks(obj)
            if not any(name in msg for name in names)]


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` laid on ``base``: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(base.get(key), value) if key in base else value
        return out
    return over


def raise_found(path: Path, found: list[tuple[Loc, str]]) -> None:
    """Raise a FileError for problems found on a loaded model (each with its field path),
    the lines read back from the file; nothing if ``found`` is empty."""
    if found:
        _, lines = read_yaml(path)
        raise FileError(path, sort_problems(row(lines, loc, msg) for loc, msg in found))


_ABSENT = object()


def lay(data: Any, lines: Lines, over: Any, over_lines: Lines, prefix: Loc,
        path: Path | None = None) -> tuple[Any, Lines]:
    """``over`` laid on ``data`` (``deep_merge``), with the lines of every field it sets
    taken from ``over_lines`` (where ``over`` sits at ``prefix``, in ``path`` when that is
    another file), so that an error in a laid field points at the line that set it."""
    out = dict(lines)

    def walk(base: Any, value: Any, loc: Loc) -> None:
        if isinstance(base, dict) and isinstance(value, dict):
            for key, sub in value.items():
                walk(base.get(key, _ABSENT), sub, loc + (key,))
            return
        _each_loc(base, loc, lambda sub: out.pop(sub, None))
        _each_loc(value, loc, lambda sub: _take(sub, over_lines, prefix, path, out))

    walk(data, over, ())
    return deep_merge(data, over), out


def _take(loc: Loc, over_lines: Lines, prefix: Loc, path: Path | None, out: Lines) -> None:
    line = over_lines.get(prefix + loc)
    if isinstance(line, Pos):  # already laid from elsewhere: keep it as it is
        out[loc] = line
    elif line is not None:
        out[loc] = Pos(line, path, prefix)


def _each_loc(value: Any, loc: Loc, visit: Callable[[Loc], Any]) -> None:
    """``visit`` every field path inside ``value`` (at ``loc``), ``loc`` included."""
    if value is _ABSENT:
        return
    visit(loc)
    if isinstance(value, dict):
        for key, sub in value.items():
            _each_loc(sub, loc + (key,), visit)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _each_loc(sub, loc + (i,), visit)

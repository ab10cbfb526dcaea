"""Loading YAML files so that every validation error names the file, the line and the field.

PyYAML's composed node tree carries line marks; we index it by the same path pydantic
uses in its error locations (mapping keys and list indexes), then map each error to the
closest line we know.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lab.errors import LabError

Loc = tuple[Any, ...]
M = TypeVar("M", bound=BaseModel)


class FileError(LabError):
    """A file that does not load: every problem in it, each with its line and field."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [_format_problem(path, *p) for p in problems]
        count = f"{len(problems)} error{'s' if len(problems) != 1 else ''}"
        super().__init__(
            f"{path}: {count}\n" + "\n".join(lines),
            hint="fix the listed fields; nothing was built",
        )


def _format_problem(path: Path, line: int | None, field: str, message: str) -> str:
    where = f"{path}:{line}" if line else str(path)
    return f"  {where}: {field}: {message}" if field else f"  {where}: {message}"


def _index_lines(node: yaml.Node, loc: Loc, out: dict[Loc, int]) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            out[loc + (name,)] = key.start_mark.line + 1
            _index_lines(value, loc + (name,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), out)


def read_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    """The file's data and a map from field path to line number."""
    try:
        text = path.read_text()
    except OSError as e:
        raise LabError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise FileError(path, [(line, "", f"YAML syntax: {e.problem or e}")]) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def line_for(lines: dict[Loc, int], loc: Loc) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_from(error: ValidationError, lines: dict[Loc, int]
                  ) -> list[tuple[int | None, str, str]]:
    problems = []
    for err in error.errors():
        # pydantic puts union/function-validator tags into loc; drop the non-field parts
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        problems.append((line_for(lines, loc), field_name(loc), message))
    return sorted(problems, key=lambda p: (p[0] or 0, p[1]))


def load_checked(
    path: Path, model: type[M], transform: Callable[[dict], dict] | None = None
) -> M:
    """Validate a YAML file against a model, then run the model's own cross-field
    ``problems()``; raise FileError listing every problem with its line and field.

    ``transform`` may change the data first (a topology variant, a scenario's overrides);
    lines then still point into the file.
    """
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise FileError(path, [(1, "", "expected a mapping at the top level")])
    if transform is not None:
        data = transform(data)
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        rows = problems_from(e, lines)
        rows += _cross_checks_of_the_rest(model, data, e, lines)
        raise FileError(path, sorted(set(rows), key=lambda p: (p[0] or 0, p[1]))) from None
    found = _cross_checks(obj)
    if found:
        rows = [(line_for(lines, loc), field_name(loc), msg) for loc, msg in found]
        raise FileError(path, sorted(rows, key=lambda p: (p[0] or 0, p[1])))
    return obj


def _cross_checks(obj: BaseModel) -> list[tuple[Loc, str]]:
    checks = getattr(obj, "problems", None)
    return checks() if checks else []


def _cross_checks_of_the_rest(model: type[M], data: dict, error: ValidationError,
                              lines: dict[Loc, int]) -> list[tuple[int | None, str, str]]:
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
    return [(line_for(lines, loc), field_name(loc), msg) for loc, msg in _cross_checks(obj)
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
        rows = [(line_for(lines, loc), field_name(loc), msg) for loc, msg in found]
        raise FileError(path, sorted(rows, key=lambda p: (p[0] or 0, p[1])))

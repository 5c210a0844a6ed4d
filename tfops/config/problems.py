"""What a configuration error says: ``<file>: <dotted.field.path>: <reason> (line N)``, or
``environment TFOPS_X: ...`` for a value from the environment. Never the value of a field that
can hold a secret."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from tfops.config.fields import Section, model_in
from tfops.config.settings import ENV_PREFIX, Settings

# Where each key of the file starts: (dotted path as a tuple) → line number.
Lines = dict[tuple[str | int, ...], int]


class Origins:
    """Knows where each value came from, to say `<file>` or `environment TFOPS_X` in errors."""

    def __init__(self, file_label: str | None, file_data: dict, lines: Lines, env_data: dict) -> None:
        self.file_label, self.file_data, self.lines, self.env_data = file_label, file_data, lines, env_data

    def problem(self, loc: tuple[str | int, ...], reason: str) -> str:
        env_var = self._env_var(loc)
        where = f"environment {env_var}" if env_var else self.file_label or "defaults"
        field = ".".join(str(part) for part in loc)
        if not field:
            return f"{where}: {reason}"
        line = None if env_var else self._line(loc)
        return f"{where}: {field}: {reason}" + (f" (line {line})" if line else "")

    def _env_var(self, loc: tuple[str | int, ...]) -> str | None:
        node: Any = self.env_data
        names: list[str] = []
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                return None
            names.append(str(part))
            node = node[part]
            if not isinstance(node, dict):
                break
        if not names or (isinstance(node, dict) and _lookup(self.file_data, loc) is not None):
            return None
        return ENV_PREFIX + "__".join(names).upper()

    def _line(self, loc: tuple[str | int, ...]) -> int | None:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None


def _lookup(data: Any, loc: tuple[str | int, ...]) -> Any:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return None
        data = data[part]
    return data


# Error types whose input is a plain scalar of a non-secret field, safe and useful to show.
_SHOW_INPUT = {"int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "bool_parsing"}


# YAML 1.1 (PyYAML) reads these unquoted words as booleans, so `on_merge: yes` arrives as True.
_YAML_BOOLEAN = "YAML reads an unquoted yes, no, on, off, true or false as true/false"


def error_reason(error: Mapping[str, Any]) -> str:
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    if kind == "extra_forbidden":
        return _unknown_key_reason(loc)
    if kind == "missing":
        return "required"
    if kind in ("enum", "literal_error"):
        choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        if isinstance(error.get("input"), bool):
            return f"must be one of {choices} — got a YAML boolean ({_YAML_BOOLEAN}); write one of the words"
        return f"must be one of {choices} — got {_show(error.get('input'))}"
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return f"must be text — got a YAML boolean ({_YAML_BOOLEAN}); put the value in quotes"
    if kind in ("greater_than_equal", "greater_than"):
        bound = f">= {ctx['ge']}" if "ge" in ctx else f"> {ctx.get('gt')}"
        return f"must be {bound} — got {_show(error.get('input'))}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    message = str(error["msg"])
    message = message[0].lower() + message[1:] if message[:2].istitle() else message
    return f"{message} — got {_show(error.get('input'))}" if kind in _SHOW_INPUT else message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key_reason(loc: tuple[str | int, ...]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is not None and issubclass(model, Section) and key in model.inline_secret_hints:
        return f"inline secrets are not accepted; {model.inline_secret_hints[key]}"
    allowed = list(model.model_fields) if model else []
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1)
    return (
        f"unknown key; did you mean {close[0]!r}?"
        if close
        else f"unknown key; expected one of {', '.join(allowed)}"
    )


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model that holds the keys at `loc` (list indexes skipped); None below plain values."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = model_in(field.annotation) if field else None
    return model


def problem_list(problems: list[str]) -> str:
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    return f"invalid configuration ({count}):\n" + "\n".join(f"  {problem}" for problem in problems)

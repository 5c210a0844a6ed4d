"""``load_settings``: the one place that reads the config file and the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tfops.config.fields import FileRelative, model_in
from tfops.config.problems import Lines, Origins, error_reason, problem_list
from tfops.config.settings import CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, ENV_PREFIX, Settings, default_data_dir
from tfops.errors import ConfigError, StackPathError


def load_settings(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the config file (see the package docstring for which one) and ``TFOPS_*`` variables.

    Raises :class:`ConfigError` listing every problem (:class:`StackPathError` when all
    of them are stack paths that are absolute or leave the repository).
    """
    config_file = _choose_config_file(path, environ)
    label = str(config_file) if config_file else None
    file_data, lines = _read_config_file(config_file) if config_file else ({}, {})
    env_data = _read_environment(environ)
    origins = Origins(label, file_data, lines, env_data)

    merged = _deep_merge(file_data, env_data)
    merged.setdefault("data_dir", str(default_data_dir(environ)))
    # Keys such as `_config_file` would reach the model's private attributes: refuse them.
    reserved = [key for key in merged if not isinstance(key, str) or key.startswith("_")]
    problems = [origins.problem((key,), "unknown key") for key in reserved]
    only_stack_paths = not reserved
    try:
        settings = Settings(**{key: value for key, value in merged.items() if key not in reserved})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems += [origins.problem(tuple(error["loc"]), error_reason(error)) for error in errors]
        only_stack_paths = only_stack_paths and all(error["type"] == "stack_path" for error in errors)
    if problems:
        raise (StackPathError if only_stack_paths else ConfigError)(problem_list(problems))
    settings._config_file = Path(os.path.abspath(config_file)) if config_file else None
    settings._environ = environ
    return settings


def _choose_config_file(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    chosen = Path(path) if path is not None else None
    if chosen is None and environ.get(CONFIG_ENV_VAR, "").strip():
        chosen = Path(environ[CONFIG_ENV_VAR].strip())
    if chosen is None:
        default = Path(DEFAULT_CONFIG_FILE)
        return default if default.is_file() else None
    chosen = chosen.expanduser()
    if not chosen.exists():
        raise ConfigError(f"{chosen}: config file not found")
    if not chosen.is_file():
        raise ConfigError(f"{chosen}: not a file")
    return chosen


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: with plain YAML the last one silently wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def _read_config_file(path: Path) -> tuple[dict[str, Any], Lines]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()
    if data is None or node is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold a mapping of settings, not a {type(data).__name__}")
    return _anchor_file_paths(data, Path(os.path.abspath(path)).parent), _key_lines(node)


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    # Only the problem and its position: the quoted source line could hold a secret.
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    context = f" ({exc.context})" if exc.context else ""
    return f"{path}: {where}: invalid YAML: {exc.problem or 'unreadable'}{context}"


def _key_lines(root: yaml.Node) -> Lines:
    lines: Lines = {}
    visited: set[int] = set()

    def walk(node: yaml.Node, prefix: tuple[str | int, ...]) -> None:
        if id(node) in visited:  # anchors may make the graph cyclic
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (*prefix, key_node.value)
                    lines.setdefault(key, key_node.start_mark.line + 1)
                    walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*prefix, index), item.start_mark.line + 1)
                walk(item, (*prefix, index))

    walk(root, ())
    return lines


def _anchor_file_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Make relative paths in the file relative to the file's directory instead of the working directory.

    Which values are paths the models say: each field marked :class:`FileRelative`, in any section.
    """

    def anchor(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else base_dir / path)

    _anchor_model(Settings, data, anchor)
    return data


def _anchor_model(model: type[BaseModel], data: dict[str, Any], anchor: Callable[[Any], Any]) -> None:
    for name, field in model.model_fields.items():
        if name not in data:
            continue
        marker = _file_relative(field)
        section = model_in(field.annotation)
        if marker is not None:
            data[name] = marker.rewrite(data[name], anchor)
        elif section is not None:
            value = data[name]
            # A section (`repo: {...}`) or a list of them (`api.tokens: [{...}]`).
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _anchor_model(section, item, anchor)


def _file_relative(field: FieldInfo) -> FileRelative | None:
    # `ConfigPath` keeps its marker in the field's metadata; `ConfigPath | None` in the union's member.
    members = [argument for argument in get_args(field.annotation) if get_origin(argument) is Annotated]
    markers = [*field.metadata, *(marker for member in members for marker in member.__metadata__)]
    return next((marker for marker in markers if isinstance(marker, FileRelative)), None)


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """``TFOPS_*`` variables as nested settings, parsed by pydantic-settings' environment source
    (``TFOPS_TERRAFORM__MAX_PARALLEL=4``; lists and mappings as JSON). Imported only when such a
    variable is set: most commands run without one and need not pay for it."""
    prefix, config_file = ENV_PREFIX.lower(), CONFIG_ENV_VAR.lower()
    if not any(name.lower().startswith(prefix) and name.lower() != config_file for name in environ):
        return {}
    from pydantic_settings import EnvSettingsSource
    from pydantic_settings.exceptions import SettingsError

    # The source needs only the model's fields; Settings is a plain model (see its docstring).
    source = EnvSettingsSource(
        Settings,  # type: ignore[arg-type]
        case_sensitive=False,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
    )
    source.env_vars = {name.lower(): value for name, value in environ.items()}
    try:
        return source()
    except SettingsError as exc:
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else f"{ENV_PREFIX}*"
        raise ConfigError(
            f"environment {name}: cannot parse the value; lists and mappings are given as JSON, "
            f"e.g. {ENV_PREFIX}TERRAFORM__ENV_PASSTHROUGH='[\"AWS_*\"]'"
        ) from None


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged

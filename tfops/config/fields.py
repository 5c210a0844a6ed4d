"""What every section is built from: the section base, shared field types and their validators."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from tfops.aws.references import parse_reference
from tfops.errors import AwsSecretError


def _anchor_whole(value: Any, anchor: Callable[[Any], Any]) -> Any:
    return anchor(value)


@dataclass(frozen=True)
class FileRelative:
    """Marks a field whose relative path, when it is written in tfops.yaml, means relative to the
    file's directory (loading anchors it; in the environment it stays relative to the working
    directory). `rewrite(value, anchor)` applies `anchor` (path text → anchored text) to the part
    of the value that is a path; by default the whole value is one."""

    rewrite: Callable[[Any, Callable[[Any], Any]], Any] = _anchor_whole


class Section(BaseModel):
    """A block of tfops.yaml: unknown keys are errors, and nothing changes once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Keys that are a secret pasted inline (`token:` instead of `token_env:`), and where the secret
    # goes instead: the error says so rather than "unknown key".
    inline_secret_hints: ClassVar[Mapping[str, str]] = {}


def absolute_path(value: object) -> object:
    if isinstance(value, str | Path):
        if not str(value).strip():
            raise ValueError("must not be empty")
        return Path(os.path.abspath(Path(value).expanduser()))
    return value


def lowercase(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits and '_')")
    return name


def _env_name_pattern(pattern: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", pattern):
        raise ValueError(f"{pattern!r} must be an environment variable name, or a prefix ending in '*'")
    return pattern


def _regex(pattern: str) -> str:
    # The pattern is not echoed: people put literal secrets in redaction lists.
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc.msg} at position {exc.pos})") from None
    if compiled.fullmatch(""):
        raise ValueError("the pattern matches the empty string, so it would redact everything")
    return pattern


def _token_env(name: str) -> str:
    # Not echoed: the usual mistake is pasting the token itself here.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            "must be the NAME of an environment variable holding the token (letters, digits and '_'), "
            "not the token itself"
        )
    return name


def _scalars_as_text(env: object) -> object:
    # YAML reads `TF_VAR_count: 3` as a number and `TF_VAR_on: true` as a boolean;
    # Terraform reads both back from text, and HCL spells booleans in lower case.
    if not isinstance(env, Mapping):
        return env
    return {
        key: (str(value).lower() if isinstance(value, bool) else str(value))
        if isinstance(value, bool | int | float)
        else value
        for key, value in env.items()
    }


class FrozenDict(dict):
    """A dict that refuses changes, so that a frozen model cannot be edited through its mappings."""

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("tfops settings are read-only after loading")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


ConfigPath = Annotated[Path, BeforeValidator(absolute_path), FileRelative()]
EnvName = Annotated[str, AfterValidator(_env_name)]
EnvNamePattern = Annotated[str, AfterValidator(_env_name_pattern)]
RegexPattern = Annotated[str, AfterValidator(_regex)]
EnvMapping = Annotated[dict[EnvName, str], BeforeValidator(_scalars_as_text), AfterValidator(FrozenDict)]
# The NAME of the environment variable holding a secret (`token_env`, `secret_env`, ...).
SecretEnvName = Annotated[str, AfterValidator(_token_env)]


# Where one of tfops' own secrets may be: an environment variable's NAME, a file, an SSM
# parameter or a Secrets Manager secret (`<name>_env`, `_file`, `_ssm`, `_secretsmanager`).
SECRET_SOURCES = ("env", "file", "ssm", "secretsmanager")


def sources_set(section: BaseModel, name: str) -> list[str]:
    """The `<name>_<source>` fields of `section` that are set."""
    fields = (f"{name}_{source}" for source in SECRET_SOURCES)
    return [field for field in fields if getattr(section, field, None)]


def has_source(section: BaseModel, name: str) -> bool:
    return bool(sources_set(section, name))


def at_most_one_source(section: BaseModel, where: str, name: str) -> None:
    """The places for one optional secret: one at most."""
    chosen = sources_set(section, name)
    if len(chosen) > 1:
        raise ValueError(f"set {' or '.join(f'{where}.{field}' for field in chosen)}, not both")


def exactly_one_source(section: BaseModel, name: str) -> None:
    """One place for a secret the section cannot work without."""
    if len(sources_set(section, name)) != 1:
        raise ValueError(
            f"set exactly one of {name}_env (a variable's NAME), {name}_file, {name}_ssm "
            f"or {name}_secretsmanager"
        )


def _aws_reference(service: str) -> AfterValidator:
    """An SSM parameter name or a Secrets Manager secret id[#key], checked by the reader's rules."""

    def check(value: str) -> str:
        try:
            parse_reference(f"{service}:{value.strip()}")
        except AwsSecretError as exc:
            raise ValueError(exc.args[0]) from None
        return value.strip()

    return AfterValidator(check)


SsmParameter = Annotated[str, _aws_reference("ssm")]
SecretsManagerSecret = Annotated[str, _aws_reference("secretsmanager")]


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, through `| None` and `tuple[...]`; None for plain values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = model_in(argument)
        if found:
            return found
    return None

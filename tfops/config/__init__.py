"""tfops configuration: one YAML file plus ``TFOPS_*`` environment overrides, validated once at start.

Where settings come from, highest precedence first:

1. the environment: ``TFOPS_`` + the dotted path with ``__`` between levels
   (``TFOPS_REPO__BRANCH=dev``, ``TFOPS_TERRAFORM__MAX_PARALLEL=8``); lists and
   mappings are JSON (``TFOPS_TERRAFORM__ENV_PASSTHROUGH='["AWS_*"]'``);
2. the YAML file: the ``path`` given to :func:`load_settings`, else ``$TFOPS_CONFIG``,
   else ``./tfops.yaml`` when it exists (only this last one may be absent);
3. the defaults in the section models (config/tfops.example.yaml lists every option with its default).

Relative paths in the file resolve against the file's directory, relative paths in the
environment against the working directory; ``~`` expands in both. Unknown keys are
errors, so a typo never silently falls back to a default.

Every problem found is reported at once, one per line, as
``<file>: <dotted.field.path>: <reason>`` (``environment TFOPS_X`` instead of the file
for values from the environment). Messages never show the value of a field that can
hold a secret. Secrets themselves are never configuration values: ``repo.token_env``
names an environment variable, ``repo.token_file`` a file, ``repo.token_ssm`` an SSM
parameter and ``repo.token_secretsmanager`` a Secrets Manager secret, read by
:meth:`Settings.repo_token` when a fetch needs them.

``Settings(...)`` validates exactly what it is given; :func:`load_settings` is the one
place that reads files and the environment.

The modules, from the bottom up: ``durations`` and ``fields`` (what sections are built
from); one module per section (``repo``, ``terraform``, ``store``, ``slack``, ``http``,
``webhooks``, ``api``, ``aws``, ``stacks``); ``settings`` (all sections in one object, and the
secret readers); ``problems`` (error messages) and ``loading`` (file and environment);
``summary`` and ``checks`` (what `check-config` and `serve` say about a loaded config).
A new section is a new module plus one field in :class:`Settings`.
"""

from tfops.config.api import ApiSettings, ApiToken
from tfops.config.aws import AwsSettings, StackAwsSettings, merge_stack_aws, parse_secret_reference
from tfops.config.checks import MIN_SECRET_CHARS, check_serving, check_slack_channel, http_needs, warnings
from tfops.config.durations import Duration, PositiveDuration, format_duration, parse_duration
from tfops.config.fields import ConfigPath, EnvMapping, EnvName, EnvNamePattern, FrozenDict, RegexPattern
from tfops.config.http import HttpSettings
from tfops.config.loading import load_settings
from tfops.config.problems import Lines
from tfops.config.repo import RepoSettings, is_local_repo_path
from tfops.config.settings import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    LogFormat,
    LogLevel,
    Settings,
    default_data_dir,
)
from tfops.config.slack import SlackApprover, SlackChannel, SlackSettings
from tfops.config.stacks import StackDefaults, StackEntry, StackName, StackPath
from tfops.config.store import StoreSettings, mask_url_password
from tfops.config.summary import describe
from tfops.config.terraform import TerraformSettings
from tfops.config.webhooks import SecretRef, WebhookSettings

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "MIN_SECRET_CHARS",
    "ApiSettings",
    "ApiToken",
    "AwsSettings",
    "ConfigPath",
    "Duration",
    "EnvMapping",
    "EnvName",
    "EnvNamePattern",
    "FrozenDict",
    "HttpSettings",
    "Lines",
    "LogFormat",
    "LogLevel",
    "PositiveDuration",
    "RegexPattern",
    "RepoSettings",
    "SecretRef",
    "Settings",
    "SlackApprover",
    "SlackChannel",
    "SlackSettings",
    "StackAwsSettings",
    "StackDefaults",
    "StackEntry",
    "StackName",
    "StackPath",
    "StoreSettings",
    "TerraformSettings",
    "WebhookSettings",
    "check_serving",
    "check_slack_channel",
    "default_data_dir",
    "describe",
    "format_duration",
    "http_needs",
    "is_local_repo_path",
    "load_settings",
    "mask_url_password",
    "merge_stack_aws",
    "parse_duration",
    "parse_secret_reference",
    "warnings",
]

"""tfops.yaml + TFOPS_* environment → Settings, and the errors people see when it is wrong."""

from __future__ import annotations

import pickle
import textwrap
import traceback
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tfops.config import (
    Settings,
    StackEntry,
    describe,
    format_duration,
    load_settings,
    parse_duration,
)
from tfops.config.aws import SecretReference, parse_secret_reference
from tfops.errors import ConfigError, StackPathError
from tfops.models import OnDrift, OnMerge

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tfops.example.yaml"
TOKEN = "ghp_s3cr3tT0kenValue0123456789abcdefABCD"


def write_config(directory: Path, text: str, name: str = "tfops.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def config_error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ or {})
    return str(caught.value)


# --------------------------------------------------------------------------- the shipped example


def test_example_config_loads_and_sets_every_section(tmp_path):
    settings = load_settings(EXAMPLE_CONFIG, {"TFOPS_DATA_DIR": str(tmp_path)})

    assert settings.data_dir == tmp_path
    assert settings.repo.url == "git@github.com:acme/infra.git"
    assert settings.repo.poll_interval == 60.0
    assert settings.terraform.timeout == 1800.0
    assert settings.defaults.drift_interval == 900.0
    assert [entry.discover or entry.name for entry in settings.stacks] == ["stacks/*", "network"]
    assert settings.stacks[1].env == {"TF_VAR_region": "eu-west-1"}
    assert settings.store_url == f"sqlite:///{tmp_path}/tfops.db"


def _fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        inner = field.annotation if isinstance(field.annotation, type) else None
        if inner is not None and issubclass(inner, BaseModel):
            names |= _fields(inner, f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def test_example_config_mentions_every_option():
    text = EXAMPLE_CONFIG.read_text()
    options = _fields(Settings) | {f"stacks.{name}" for name in StackEntry.model_fields}
    missing = [option for option in options if f"{option.rsplit('.', 1)[-1]}:" not in text]
    assert missing == []


# --------------------------------------------------------------------------- where settings come from


def test_without_a_file_defaults_and_environment_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"HOME": str(tmp_path), "TFOPS_REPO__BRANCH": "dev"})

    assert settings.config_file is None
    assert settings.repo.branch == "dev"
    assert settings.data_dir == tmp_path / ".local/state/tfops"
    assert settings.checkout_dir == settings.data_dir / "repo"
    assert settings.plugin_cache_dir == settings.data_dir / "plugin-cache"
    assert settings.runs_dir == settings.data_dir / "runs"
    assert settings.stacks_dir == settings.data_dir / "stacks"
    assert settings.terraform.max_parallel == 4
    assert settings.defaults.on_merge is OnMerge.APPLY


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/tfops:/var/lib/other", "XDG_STATE_HOME": "/x"}, "/var/lib/tfops"),
        ({"XDG_STATE_HOME": "/home/me/.state", "HOME": "/home/me"}, "/home/me/.state/tfops"),
        ({"XDG_STATE_HOME": "relative/ignored", "HOME": "/home/me"}, "/home/me/.local/state/tfops"),
    ],
)
def test_data_dir_default_follows_systemd_then_xdg(environ, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ=environ).data_dir == Path(expected)


def test_tfops_yaml_in_working_directory_is_read(tmp_path, monkeypatch):
    write_config(tmp_path, "log_level: debug\n")
    monkeypatch.chdir(tmp_path)

    settings = load_settings(environ={})

    assert settings.log_level == "debug"
    assert settings.config_file == tmp_path / "tfops.yaml"


def test_tfops_config_variable_names_the_file_and_an_explicit_path_beats_it(tmp_path):
    from_variable = write_config(tmp_path, "log_level: warning\n", "a.yaml")
    explicit = write_config(tmp_path, "log_level: error\n", "b.yaml")

    assert load_settings(environ={"TFOPS_CONFIG": str(from_variable)}).log_level == "warning"
    assert load_settings(explicit, {"TFOPS_CONFIG": str(from_variable)}).log_level == "error"


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "nope.yaml"

    assert "nope.yaml: config file not found" in config_error(missing)
    assert "config file not found" in config_error(None, {"TFOPS_CONFIG": str(missing)})


def test_environment_overrides_nested_values_and_wins_over_the_file(tmp_path):
    path = write_config(
        tmp_path,
        """
        repo: {url: https://example.com/infra.git, branch: main}
        terraform: {max_parallel: 2, env_passthrough: [AWS_PROFILE]}
        """,
    )
    environ = {
        "TFOPS_REPO__BRANCH": "dev",
        "TFOPS_TERRAFORM__MAX_PARALLEL": "8",
        "TFOPS_TERRAFORM__ENV_PASSTHROUGH": '["AWS_*", "ARM_CLIENT_ID"]',
        "TFOPS_DEFAULTS__DRIFT_INTERVAL": "1h",
    }

    settings = load_settings(path, environ)

    assert settings.repo.branch == "dev"
    assert settings.repo.url == "https://example.com/infra.git"  # untouched siblings survive the merge
    assert settings.terraform.max_parallel == 8
    assert settings.terraform.env_passthrough == ("AWS_*", "ARM_CLIENT_ID")
    assert settings.defaults.drift_interval == 3600.0


def test_stacks_can_come_from_the_environment_as_json(tmp_path):
    settings = load_settings(None, {"TFOPS_STACKS": '[{"path": "core/net", "on_merge": "plan"}]'})
    assert (settings.stacks[0].name, settings.stacks[0].on_merge) == ("net", OnMerge.PLAN)


def test_unparseable_json_in_the_environment_names_the_variable():
    message = config_error(None, {"TFOPS_TERRAFORM__ENV_PASSTHROUGH": "AWS_*"})
    assert "environment TFOPS_TERRAFORM" in message
    assert "JSON" in message


def _path_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found += _path_fields(field.annotation, (*prefix, name))
        elif "Path" in str(field.annotation):
            found.append((*prefix, name))
    return found


def test_every_relative_path_in_the_file_resolves_against_the_file_directory(tmp_path, monkeypatch):
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    monkeypatch.chdir(tmp_path)  # somewhere else
    path_fields = _path_fields(Settings)
    assert ("repo", "token_file") in path_fields  # the scan does find nested fields
    data: dict = {"terraform": {"binary": "bin/terraform"}, "repo": {"url": "../infra"}}
    data["store"] = {"url": "sqlite:///db/tfops.db"}
    for *sections, leaf in path_fields:
        target = data
        for section in sections:
            target = target.setdefault(section, {})
        target[leaf] = "rel/" + "_".join((*sections, leaf))
    config_file = config_dir / "tfops.yaml"
    config_file.write_text(yaml.safe_dump(data))

    settings = load_settings(config_file, {})

    for keys in path_fields:
        value = settings
        for key in keys:
            value = getattr(value, key)
        assert value == config_dir / "rel" / "_".join(keys), keys
    assert settings.terraform.binary == str(config_dir / "bin/terraform")
    assert settings.repo.url == str(tmp_path / "infra")
    assert settings.store_url == f"sqlite:///{config_dir}/db/tfops.db"


def test_relative_paths_from_the_environment_resolve_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    path = write_config(tmp_path / "etc", "log_level: info\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    settings = load_settings(path, {"TFOPS_DATA_DIR": "state", "TFOPS_REPO__SSH_KEY_FILE": "~/.ssh/deploy"})

    assert settings.data_dir == tmp_path / "state"
    assert settings.repo.ssh_key_file == tmp_path / "home/.ssh/deploy"


def test_bare_binary_name_stays_a_path_lookup(tmp_path):
    settings = load_settings(write_config(tmp_path, "terraform: {binary: tofu}\n"), {})
    assert settings.terraform.binary == "tofu"


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1500ms", 1.5),
        ("1d", 86400.0),
        ("90", 90.0),
        (45, 45.0),
        (2.5, 2.5),
        (" 1M ", 60.0),
        ("0", 0.0),
    ],
)
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10x", "m", "1h-5m", "", "-5s", -1, "inf", True, None, [1]])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_formatted_durations_parse_back(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_bad_duration_in_the_file_names_field_and_value(tmp_path):
    message = config_error(write_config(tmp_path, "repo:\n  poll_interval: 10 minutes\n"))
    assert "tfops.yaml: repo.poll_interval: invalid duration '10 minutes'" in message
    assert "(line 2)" in message


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("terraform: {timeout: 0}", "terraform.timeout: must be greater than 0"),
        ("terraform: {stop_grace: -1s}", "terraform.stop_grace: a duration must not be negative"),
        ("repo: {fetch_timeout: 0s}", "repo.fetch_timeout: must be greater than 0"),
        ("terraform: {max_parallel: 0}", "terraform.max_parallel: must be >= 1 — got 0"),
        ("terraform: {max_parallel: many}", "terraform.max_parallel: input should be a valid integer"),
    ],
)
def test_limits_must_be_positive(tmp_path, yaml_text, field):
    assert field in config_error(write_config(tmp_path, yaml_text))


def test_zero_drift_interval_disables_checks_and_is_allowed(tmp_path):
    settings = load_settings(
        write_config(tmp_path, "defaults: {drift_interval: 0}\nterraform: {lock_timeout: 0}"), {}
    )
    assert settings.defaults.drift_interval == 0.0
    assert settings.terraform.lock_timeout == 0.0


# --------------------------------------------------------------------------- error messages


def test_unknown_key_is_an_error_naming_the_field_with_a_suggestion(tmp_path):
    message = config_error(write_config(tmp_path, "repo:\n  url: x\n  brnach: dev\n"))
    assert "tfops.yaml: repo.brnach: unknown key; did you mean 'branch'?" in message
    assert "(line 3)" in message


def test_unknown_top_level_key_is_an_error(tmp_path):
    message = config_error(write_config(tmp_path, "log_levle: debug\n_env_file: x\n"))
    assert "log_levle: unknown key; did you mean 'log_level'?" in message
    assert "_env_file: unknown key" in message


def test_unknown_nested_key_from_the_environment_names_the_variable():
    message = config_error(None, {"TFOPS_REPO__BRANC": "dev"})
    assert "environment TFOPS_REPO__BRANC: repo.branc: unknown key; did you mean 'branch'?" in message


def test_bad_enum_lists_the_choices_and_the_value(tmp_path):
    path = write_config(
        tmp_path,
        """
        stacks:
          - discover: "stacks/*"
          - path: core/network
            on_merge: aply
        """,
    )
    assert "tfops.yaml: stacks.1.on_merge: must be one of apply, plan, ask — got 'aply'" in config_error(path)


def test_enum_values_are_case_insensitive(tmp_path):
    settings = load_settings(write_config(tmp_path, "defaults: {on_drift: Remediate}\nlog_level: INFO\n"), {})
    assert settings.defaults.on_drift is OnDrift.REMEDIATE
    assert settings.log_level == "info"


def test_every_problem_is_reported_at_once(tmp_path):
    path = write_config(tmp_path, "log_format: xml\nterraform: {max_parallel: 0}\nrepo: {branch: '-x'}\n")
    message = config_error(path)
    assert "invalid configuration (3 problems)" in message
    assert all(field in message for field in ("log_format", "terraform.max_parallel", "repo.branch"))


def test_yaml_syntax_error_reports_line_and_column(tmp_path):
    path = write_config(tmp_path, "repo:\n  url: x\n  branch: [main\nlog_level: info\n")
    message = config_error(path)
    assert "tfops.yaml: line 4, column 10: invalid YAML" in message


def test_duplicate_keys_in_yaml_are_an_error(tmp_path):
    message = config_error(write_config(tmp_path, "log_level: info\nlog_level: debug\n"))
    assert "line 2" in message and "duplicate key 'log_level'" in message


def test_a_file_that_is_not_a_mapping_is_an_error(tmp_path):
    assert "must hold a mapping of settings, not a list" in config_error(write_config(tmp_path, "- a\n- b\n"))


def test_an_empty_file_means_defaults(tmp_path):
    assert load_settings(write_config(tmp_path, "# nothing yet\n"), {}).log_level == "info"


# --------------------------------------------------------------------------- stack entries


def test_stack_entry_needs_exactly_one_of_discover_and_path(tmp_path):
    both = config_error(write_config(tmp_path, "stacks: [{discover: 'a/*', path: b}]"))
    neither = config_error(write_config(tmp_path, "stacks: [{on_merge: plan}]"))
    assert "stacks.0: a stack entry needs exactly one of `discover`" in both
    assert "stacks.0: a stack entry needs exactly one of `discover`" in neither


@pytest.mark.parametrize("bad_path", ["../x", "/etc", "stacks/../../x", "~/infra"])
def test_stack_paths_outside_the_repository_are_refused(tmp_path, bad_path):
    path = write_config(tmp_path, f"stacks: [{{path: '{bad_path}', name: x}}, {{discover: '{bad_path}/*'}}]")
    with pytest.raises(StackPathError) as caught:
        load_settings(path, {})
    assert "stacks.0.path" in str(caught.value)
    assert "stacks.1.discover" in str(caught.value)


def test_stack_name_defaults_to_the_last_path_component_and_paths_are_normalised(tmp_path):
    settings = load_settings(write_config(tmp_path, "stacks: [{path: ./core//network/}]"), {})
    assert (settings.stacks[0].name, settings.stacks[0].path) == ("network", "core/network")


def test_stack_names_must_be_unique(tmp_path):
    path = write_config(tmp_path, "stacks: [{path: a/net}, {path: b/net}]")
    assert "stacks: stack name 'net' is used by entries 0 and 1" in config_error(path)


@pytest.mark.parametrize("name", ["my stack", "..", "a/b", "ünï"])
def test_stack_names_are_plain(tmp_path, name):
    path = write_config(tmp_path, f"stacks: [{{path: a, name: '{name}'}}]")
    assert "stacks.0.name: stack name" in config_error(path)


def test_root_stack_needs_a_name(tmp_path):
    assert "needs a `name`" in config_error(write_config(tmp_path, "stacks: [{path: .}]"))


def test_stack_env_values_become_text_and_names_are_checked(tmp_path):
    ok = load_settings(write_config(tmp_path, "stacks: [{path: a, env: {TF_VAR_n: 3, TF_VAR_on: true}}]"), {})
    assert ok.stacks[0].env == {"TF_VAR_n": "3", "TF_VAR_on": "true"}
    assert "not an environment variable name" in config_error(
        write_config(tmp_path, "stacks: [{path: a, env: {'BAD-NAME': x}}]")
    )


def test_absolute_var_files_are_refused(tmp_path):
    message = config_error(write_config(tmp_path, "stacks: [{path: a, var_files: [/etc/secret.tfvars]}]"))
    assert "stacks.0.var_files.0" in message and "kept in the repository" in message


# --------------------------------------------------------------------------- repo and secrets


def test_token_from_the_named_variable_never_shows_in_repr_describe_or_errors(tmp_path):
    environ = {"GIT_TOKEN": TOKEN, "TFOPS_DATA_DIR": str(tmp_path)}
    good = write_config(tmp_path, "repo: {url: 'https://github.com/acme/infra.git', token_env: GIT_TOKEN}\n")

    settings = load_settings(good, environ)

    assert settings.repo_token() == TOKEN
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())
    assert TOKEN not in describe(settings)
    assert "token from $GIT_TOKEN (set)" in describe(settings)
    broken = write_config(
        tmp_path, "repo: {url: 'https://github.com/acme/infra.git', token_env: GIT_TOKEN}\nx: 1"
    )
    assert TOKEN not in config_error(broken, environ)


@pytest.mark.parametrize(
    "repo_yaml",
    [
        f"repo: {{token: {TOKEN}}}",
        f"repo: {{url: 'https://x-access-token:{TOKEN}@github.com/acme/infra.git'}}",
        f"repo: {{url: 'https://{TOKEN}@github.com/acme/infra.git'}}",
        f"repo: {{token_env: '{TOKEN}-value'}}",
        f"repo: {{username: 'me:{TOKEN}'}}",
    ],
)
def test_inline_secrets_are_refused_without_echoing_them(tmp_path, repo_yaml):
    message = config_error(write_config(tmp_path, repo_yaml))
    assert TOKEN not in message
    assert "token_env" in message


def test_inline_token_from_the_environment_is_refused_too():
    message = config_error(None, {"TFOPS_REPO__TOKEN": TOKEN})
    assert "environment TFOPS_REPO__TOKEN: repo.token: inline secrets are not accepted" in message
    assert TOKEN not in message


def test_the_full_traceback_of_a_config_error_holds_no_secret(tmp_path):
    # pydantic's own ValidationError shows input values; it must not ride along as a cause.
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, f"repo: {{token: {TOKEN}}}"), {})
    assert TOKEN not in "".join(traceback.format_exception(caught.value))


def test_token_file_is_read_at_call_time(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    settings = load_settings(write_config(tmp_path, "repo: {token_file: token}\n"), {})

    assert settings.repo_token() == "first"
    token_file.write_text("rotated\n")
    assert settings.repo_token() == "rotated"
    token_file.unlink()
    with pytest.raises(ConfigError, match=r"repo.token_file: .* does not exist"):
        settings.repo_token()


def test_token_env_that_is_not_set_is_reported_by_name(tmp_path):
    settings = load_settings(write_config(tmp_path, "repo: {token_env: GIT_TOKEN}\n"), {})
    assert "token from $GIT_TOKEN (NOT SET)" in describe(settings)
    with pytest.raises(ConfigError, match="GIT_TOKEN is not set"):
        settings.repo_token()


def test_token_env_and_token_file_are_exclusive(tmp_path):
    path = write_config(tmp_path, "repo: {token_env: A, token_file: /t}\n")
    assert "repo: set repo.token_env or repo.token_file, not both" in config_error(path)


def test_no_token_configured_means_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).repo_token() is None


@pytest.mark.parametrize(
    "url", ["--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/pwned", "ftp://example.com/infra.git"]
)
def test_repo_urls_that_are_not_git_remotes_are_refused(tmp_path, url):
    assert "repo.url" in config_error(None, {"TFOPS_REPO__URL": url})


@pytest.mark.parametrize("branch", ["-f", "a..b", "main.lock", "has space", "/main"])
def test_unusable_branch_names_are_refused(branch):
    assert "is not a usable branch name" in config_error(None, {"TFOPS_REPO__BRANCH": branch})


def test_store_password_is_masked_in_describe_and_repr(tmp_path):
    settings = load_settings(None, {"TFOPS_STORE__URL": "postgresql://tfops:pa55word@db/tfops", "HOME": "/h"})
    assert settings.store_url == "postgresql://tfops:pa55word@db/tfops"
    assert "pa55word" not in describe(settings)
    assert "postgresql://tfops:***@db/tfops" in describe(settings)
    assert "pa55word" not in repr(settings)


# --------------------------------------------------------------------------- redaction patterns


def test_redact_patterns_compile_once_loaded(tmp_path):
    settings = load_settings(write_config(tmp_path, "redact_patterns: ['AKIA[0-9A-Z]{16}']\n"), {})
    assert settings.compiled_redact_patterns[0].search("key AKIAABCDEFGHIJKLMNOP here")
    assert settings.compiled_redact_patterns is settings.compiled_redact_patterns


def test_invalid_redact_pattern_is_reported_without_the_pattern(tmp_path):
    message = config_error(write_config(tmp_path, "redact_patterns: ['ok', 'sup3rsecret(']\n"))
    assert "redact_patterns.1: not a valid regular expression" in message
    assert "sup3rsecret" not in message


def test_redact_pattern_matching_everything_is_refused(tmp_path):
    assert "matches the empty string" in config_error(write_config(tmp_path, "redact_patterns: ['a*']\n"))


# --------------------------------------------------------------------------- immutability and describe


def test_settings_are_frozen_after_load(tmp_path):
    settings = load_settings(write_config(tmp_path, "stacks: [{path: a, env: {A: b}}]\n"), {})

    with pytest.raises(ValidationError):
        settings.log_level = "debug"
    with pytest.raises(ValidationError):
        settings.repo.branch = "dev"
    with pytest.raises(TypeError):
        settings.stacks[0].env["A"] = "changed"
    assert settings.stacks[0].env == {"A": "b"}
    assert pickle.loads(pickle.dumps(settings.stacks[0])) == settings.stacks[0]


def test_describe_summarises_stacks_and_policies_without_env_values(tmp_path):
    settings = load_settings(
        write_config(
            tmp_path,
            """
            stacks:
              - discover: "stacks/*"
                drift_interval: 0
              - {path: core/network, on_merge: plan, var_files: [prod.tfvars], env: {TF_VAR_pw: hunter2}}
            """,
        ),
        {"TFOPS_DATA_DIR": str(tmp_path)},
    )
    text = describe(settings)

    assert "discover stacks/* (on merge apply, on drift notify, no scheduled drift check)" in text
    assert "network: core/network (on merge plan" in text
    assert "env TF_VAR_pw" in text
    assert "hunter2" not in text
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize("pattern", ["*", "AWS-*", "A*B"])
def test_env_passthrough_takes_names_or_prefixes_but_never_everything(tmp_path, pattern):
    message = config_error(
        write_config(tmp_path, f"terraform: {{env_passthrough: [AWS_PROFILE, '{pattern}']}}")
    )
    assert "terraform.env_passthrough.1: " in message


# ---------------------------------------------------------------------- approvals, Slack transports, http


def test_approval_policy_is_inherited_from_defaults_and_overridden_per_entry(tmp_path):
    from tfops.config import warnings

    path = write_config(
        tmp_path,
        """
        defaults:
          on_merge: ask
          approvers: [U0ALICE, S0PLATFORM]
          approval_ttl: 2h
        stacks:
          - path: stacks/app
          - path: stacks/payments
            approvers: [U0ALICE]
            approvals_required: 2
        """,
    )
    settings = load_settings(path, {})

    assert settings.stacks[0].approvers is None  # taken from defaults when the stack is built
    assert settings.defaults.approval_ttl == 7200
    assert warnings(settings) == [
        "stacks.1: approvals_required is 2 but only 1 approver(s) are listed",
        "an `ask` policy is set but Slack is off: approve with `tfops approve RUN_ID`",
    ]


def test_an_approver_must_be_a_slack_id_not_a_name(tmp_path):
    path = write_config(tmp_path, "defaults:\n  approvers: ['@alice']\n")
    assert "is not a Slack user id (U0123ABCD) or user group id (S0123ABCD)" in config_error(path)


def test_inline_slack_secrets_are_refused_with_the_way_to_give_them(tmp_path):
    path = write_config(tmp_path, "slack:\n  signing_secret: abc\n")
    message = config_error(path)
    assert "inline secrets are not accepted" in message and "slack.signing_secret_env" in message
    assert "abc" not in message


def test_describe_says_where_slack_secrets_come_from_and_whether_they_are_there(tmp_path):
    path = write_config(
        tmp_path,
        """
        slack:
          bot_token_env: BOT
          app_token_env: APP
          channel: C0DEPLOYS
        http:
          listen: 127.0.0.1:8080
        """,
    )
    settings = load_settings(path, {"BOT": "xoxb-secret-value"})
    text = describe(settings)

    assert "bot token       from $BOT (set)" in text
    assert "Socket Mode, app token from $APP (NOT SET)" in text
    assert "listening on 127.0.0.1:8080, plain HTTP" in text
    assert "xoxb-secret-value" not in text
    with pytest.raises(ConfigError, match=r"slack\.app_token_env: the environment variable APP is not set"):
        settings.slack_app_token()


def test_http_listen_and_tls_pairs_are_checked(tmp_path):
    assert "must be HOST:PORT" in config_error(write_config(tmp_path, "http:\n  listen: localhost\n"))
    assert "set both http.tls_cert and http.tls_key" in config_error(
        write_config(tmp_path, "http:\n  listen: 127.0.0.1:8443\n  tls_cert: cert.pem\n")
    )


def test_serving_checks_that_webhooks_and_the_api_have_a_server_and_their_secrets(tmp_path):
    from tfops.config import check_serving, http_needs

    (tmp_path / "api-token").write_text("   \n")
    path = write_config(
        tmp_path,
        """
        webhooks:
          github: {secret_env: GH_SECRET}
        api:
          tokens:
            - {name: ci, token_file: api-token, scope: write}
        """,
    )
    settings = load_settings(path, {})
    assert http_needs(settings) == ["webhooks", "api.tokens"]
    with pytest.raises(ConfigError, match=r"http\.listen: not set, but webhooks and api\.tokens need"):
        check_serving(settings)

    listening = write_config(tmp_path, path.read_text() + "http:\n  listen: 127.0.0.1:8080\n")
    with pytest.raises(
        ConfigError, match=r"webhooks\.github\.secret_env: the environment variable GH_SECRET"
    ):
        check_serving(load_settings(listening, {}))
    with pytest.raises(ConfigError, match=r"api\.tokens\.0\.token_file: .*api-token is empty"):
        check_serving(load_settings(listening, {"GH_SECRET": "s3cret"}))
    described = describe(load_settings(listening, {"GH_SECRET": "s3cret"}))
    assert "github secret from $GH_SECRET (set)" in described and "s3cret" not in described
    assert "ci (write) file" in described


def test_a_webhook_secret_needs_exactly_one_source_and_token_names_are_checked(tmp_path):
    both = write_config(tmp_path, "webhooks:\n  gitlab: {secret_env: A, secret_file: b}\n")
    assert "set exactly one of secret_env" in config_error(both)
    bad_name = write_config(tmp_path, "api:\n  tokens:\n    - {name: _ci, token_env: T}\n")
    assert "starting with a letter or digit" in config_error(bad_name)
    unbracketed = write_config(tmp_path, "http:\n  listen: '::1:8080'\n")
    assert "put an IPv6 address in brackets" in config_error(unbracketed)


def test_check_config_warns_about_plain_http_off_loopback_and_short_secrets(tmp_path):
    from tfops.config import warnings

    path = write_config(
        tmp_path,
        """
        http:
          listen: 0.0.0.0:8080
        webhooks:
          generic: {secret_env: FETCH_TOKEN}
        """,
    )
    found = warnings(load_settings(path, {"FETCH_TOKEN": "short"}))

    assert any("http.listen is 0.0.0.0:8080 without TLS" in warning for warning in found)
    assert "webhooks.generic: the secret has 5 characters; use 16 or more random ones" in found
    assert not any("short" in warning for warning in found), "the secret itself is never shown"
    on_loopback = write_config(tmp_path, "http:\n  listen: 127.0.0.1:8080\n")
    assert warnings(load_settings(on_loopback, {})) == []


# ----------------------------------------------------------------------- aws: roles, secrets, backend config

PLAN_ROLE = "arn:aws:iam::111111111111:role/tfops-read"
APPLY_ROLE = "arn:aws:iam::111111111111:role/tfops-apply"
NETWORK_APPLY = "arn:aws:iam::222222222222:role/network-apply"


def test_the_aws_section_sets_region_endpoint_and_attribution_and_the_environment_overrides_it(tmp_path):
    path = write_config(tmp_path, "aws: {region: eu-west-1, endpoint_url: 'http://127.0.0.1:5000'}\n")

    from_file = load_settings(path, {})
    overridden = load_settings(path, {"TFOPS_AWS__REGION": "us-gov-west-1", "TFOPS_AWS__ATTRIBUTION": "true"})

    assert (from_file.aws.region, from_file.aws.endpoint_url, from_file.aws.attribution) == (
        "eu-west-1",
        "http://127.0.0.1:5000",
        False,
    )
    assert (overridden.aws.region, overridden.aws.attribution) == ("us-gov-west-1", True)
    assert load_settings(None, {}).aws.region is None  # boto3's default chain decides


def test_the_global_attribution_switch_reaches_stacks_of_a_config_without_defaults(tmp_path):
    path = write_config(tmp_path, "aws: {attribution: true}\nstacks: [{name: app, path: stacks/app}]\n")

    settings = load_settings(path, {})

    assert settings.defaults.aws.attribution is True, "validators run on sections left out"


def test_a_stack_block_overrides_the_default_roles_key_by_key(tmp_path):
    path = write_config(
        tmp_path,
        f"""\
        defaults:
          aws: {{plan_role: "{PLAN_ROLE}", apply_role: "{APPLY_ROLE}", session_duration: 2h,
                 external_id_env: TFOPS_AWS_EXTERNAL_ID}}
        stacks:
          - {{path: core/network, aws: {{apply_role: "{NETWORK_APPLY}"}}}}
        """,
    )

    settings = load_settings(path, {})

    assert settings.defaults.aws.session_duration == 7200.0
    assert settings.stacks[0].aws is not None
    assert settings.stacks[0].aws.model_fields_set == {"apply_role"}  # the rest comes from defaults


@pytest.mark.parametrize(
    ("yaml_text", "field", "reason"),
    [
        (
            "defaults: {aws: {plan_role: 'arn:aws:iam::123:role/x'}}",
            "defaults.aws.plan_role",
            "'arn:aws:iam::123:role/x' is not an IAM role ARN",
        ),
        (
            "stacks: [{path: a, aws: {apply_role: 'arn:aws:s3:::state-bucket'}}]",
            "stacks.0.aws.apply_role",
            "is not an IAM role ARN (arn:aws:iam::<12-digit account id>:role/<name>)",
        ),
        ("defaults: {aws: {session_duration: 10m}}", "defaults.aws.session_duration", "from 15m to 12h"),
        (
            "stacks: [{path: a, aws: {session_duration: 13h}}]",
            "stacks.0.aws.session_duration",
            "from 15m to 12h",
        ),
        ("defaults: {aws: {session_duration: soon}}", "defaults.aws.session_duration", "invalid duration"),
        (
            "defaults: {aws: {external_id_env: 'my external id'}}",
            "defaults.aws.external_id_env",
            "must be the NAME of an environment variable",
        ),
        (
            "stacks: [{path: a, aws: {external_id: abc}}]",
            "stacks.0.aws.external_id",
            "inline secrets are not accepted; name the variable holding it with external_id_env",
        ),
        ("stacks: [{path: a, aws: {plan_rol: x}}]", "stacks.0.aws.plan_rol", "did you mean 'plan_role'?"),
        (
            "stacks: [{path: a, secrets: {TF_VAR_db: 'vault:prod/db'}}]",
            "stacks.0.secrets.TF_VAR_db",
            "secret reference 'vault:prod/db' must start with 'ssm:' or 'secretsmanager:'",
        ),
        (
            "defaults: {secrets: {TF_VAR_db: 'ssm:prod/db'}}",
            "defaults.secrets.TF_VAR_db",
            "an SSM parameter name starts with '/'",
        ),
        (
            "stacks: [{path: a, secrets: {TF_VAR_key: 'secretsmanager:prod/api#'}}]",
            "stacks.0.secrets.TF_VAR_key",
            "has no key after #",
        ),
        (
            "stacks: [{path: a, secrets: {'TF-VAR-db': 'ssm:/prod/db'}}]",
            "stacks.0.secrets.TF-VAR-db.[key]",  # the key, not its reference, is wrong
            "'TF-VAR-db' is not an environment variable name",
        ),
        (
            "stacks: [{path: a, backend_config: [/etc/tfops/prod.s3.tfbackend]}]",
            "stacks.0.backend_config.0",
            "backend config file '/etc/tfops/prod.s3.tfbackend' must be relative to the stack directory",
        ),
        ("stacks: [{path: a, backend_config: ['']}]", "stacks.0.backend_config.0", "must not be empty"),
        ("aws: {region: Europe}", "aws.region", "'Europe' is not an AWS region name"),
        ("aws: {endpoint_url: 'ftp://127.0.0.1'}", "aws.endpoint_url", "must be an http:// or https:// URL"),
        (
            "aws: {endpoint_url: 'https://AKIA:hunter2@vpce.example'}",
            "aws.endpoint_url",
            "must not carry credentials",
        ),
        ("aws: {attribution: maybe}", "aws.attribution", "valid boolean"),
        (
            "aws: {service_endpoints: {cloudtrial: 'https://vpce.example'}}",
            "aws.service_endpoints",
            "unknown service 'cloudtrial'; tfops calls sts, ssm, secretsmanager, cloudtrail",
        ),
        (
            "aws: {service_endpoints: {cloudtrail: 'https://AKIA:hunter2@vpce.example'}}",
            "aws.service_endpoints",
            "must not carry credentials",
        ),
    ],
)
def test_each_invalid_aws_value_is_an_error_with_its_file_line_and_reason(tmp_path, yaml_text, field, reason):
    path = write_config(tmp_path, "# tfops.yaml\n" + yaml_text + "\n")

    message = config_error(path)

    assert f"{path}: {field}: " in message
    assert reason in message
    assert "(line 2)" in message
    assert "hunter2" not in message


def test_describe_shows_each_stacks_roles_secret_references_and_backend_config(tmp_path):
    path = write_config(
        tmp_path,
        f"""\
        aws: {{region: eu-west-1, endpoint_url: "http://127.0.0.1:5000", attribution: true}}
        defaults:
          aws: {{plan_role: "{PLAN_ROLE}", external_id_env: TFOPS_AWS_EXTERNAL_ID}}
          secrets: {{TF_VAR_db_password: "ssm:/prod/db/password"}}
        stacks:
          - path: core/network
            aws: {{apply_role: "{NETWORK_APPLY}", attribution: false}}
            secrets: {{TF_VAR_api_key: "secretsmanager:prod/api#key"}}
            backend_config: [backend/prod.s3.tfbackend, backend/lock.tfbackend]
          - path: plain
            aws: {{plan_role: null}}
        """,
    )

    text = describe(load_settings(path, {"TFOPS_AWS_EXTERNAL_ID": "ext-1d-value"}))

    assert "aws               region eu-west-1, endpoint http://127.0.0.1:5000, drift attribution on" in text
    network = text[text.index("network: core/network") : text.index("plain: plain")]
    assert f"plan {PLAN_ROLE}, apply {NETWORK_APPLY}, sessions 1h" in network
    assert "external id from $TFOPS_AWS_EXTERNAL_ID (set); drift attribution off" in network
    assert "TF_VAR_api_key from secretsmanager:prod/api#key" in network
    assert "TF_VAR_db_password from ssm:/prod/db/password" in network
    assert "backend config  backend/prod.s3.tfbackend, backend/lock.tfbackend" in network
    plain = text[text.index("plain: plain") :]
    assert "aws roles       daemon's own AWS identity; drift attribution on" in plain
    assert "ext-1d-value" not in text


def test_the_example_config_shows_a_stack_with_its_own_apply_role_secrets_and_backend_config(tmp_path):
    settings = load_settings(EXAMPLE_CONFIG, {"TFOPS_DATA_DIR": str(tmp_path)})

    network = settings.stacks[1]
    assert settings.aws.region is None and settings.aws.attribution is False
    assert settings.defaults.aws.session_duration == 3600.0 and settings.defaults.secrets == {}
    assert network.aws is not None and network.aws.apply_role == NETWORK_APPLY
    assert network.secrets == {"TF_VAR_api_key": "secretsmanager:prod/api#key"}
    assert network.backend_config == ("backend/prod.s3.tfbackend",)


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("ssm:/prod/db/password", ("ssm", "/prod/db/password", None)),
        ("ssm:/prod/db/password:3", ("ssm", "/prod/db/password:3", None)),  # GetParameter takes name:version
        ("secretsmanager:prod/api", ("secretsmanager", "prod/api", None)),
        ("secretsmanager:prod/api#key", ("secretsmanager", "prod/api", "key")),
        (
            "secretsmanager:arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/api-AbCdEf#db.pass",
            (
                "secretsmanager",
                "arn:aws:secretsmanager:eu-west-1:111111111111:secret:prod/api-AbCdEf",
                "db.pass",
            ),
        ),
    ],
)
def test_a_secret_reference_splits_into_service_name_and_json_key(reference, parts):
    assert parse_secret_reference(reference) == SecretReference(*parts)


@pytest.mark.parametrize(
    "reference", ["ssm:/", "ssm:/prod/", "ssm:prod/db", "secretsmanager:", "vault:x", "/prod/db"]
)
def test_anything_else_is_not_a_secret_reference(reference):
    with pytest.raises(ValueError, match=r"secret reference|starts with '/'"):
        parse_secret_reference(reference)


def test_tfops_own_secrets_may_come_from_ssm_or_secrets_manager_and_only_from_one_place(tmp_path):
    path = write_config(
        tmp_path,
        "slack: {bot_token_ssm: /tfops/slack/bot-token, channel: C0DEPLOYS}\n"
        "webhooks: {github: {secret_secretsmanager: 'tfops/webhooks#github'}}\n",
    )
    settings = load_settings(path, {})
    assert settings.slack.enabled
    assert "from ssm:/tfops/slack/bot-token" in describe(settings)
    assert "github secret from secretsmanager:tfops/webhooks#github" in describe(settings)

    both = write_config(tmp_path, "repo: {token_env: A, token_ssm: /tfops/git-token}\n")
    assert "repo: set repo.token_env or repo.token_ssm, not both" in config_error(both)
    bad = write_config(tmp_path, "slack: {bot_token_ssm: 'tfops/slack', channel: C0DEPLOYS}\n")
    assert "an SSM parameter name starts with '/' when it has a path" in config_error(bad)

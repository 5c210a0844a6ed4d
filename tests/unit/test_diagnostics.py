"""tfops.terraform.diagnostics on real Terraform error output (tests/fixtures/errors, see its README).

Every fixture is what Terraform 1.0.3 (the top folder) or 1.11 (tf1.11/) printed for a failure
that scripts/make_error_fixtures.py provoked; the tables below say what each one must become.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tfops.errors import (
    ConfigurationError,
    InitRequiredError,
    ProviderError,
    RetryableError,
    StalePlanError,
    StateLockError,
    TerminalError,
    TerraformError,
)
from tfops.terraform.diagnostics import classify, lock_id_in, subcommand

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "errors"
OUTPUT_MARKER = "# ---- combined stdout+stderr below ----\n"
TF_1_0 = "1.0"
TF_1_11 = "1.11"

EXPECTED_TYPE: dict[str, type[TerraformError]] = {
    "state_lock": StateLockError,
    "stale_plan": StalePlanError,
    "stale_plan_other_lineage": StalePlanError,
    "stale_plan_from_empty_state": StalePlanError,
    "init_required": InitRequiredError,
    "init_required_module": InitRequiredError,
    "init_required_backend": InitRequiredError,
    "provider_error_invalid_name": ProviderError,
    "provider_error_apply_write": ProviderError,
    "provider_error_apply_configure": ProviderError,
    "provider_error_apply_exists": ProviderError,
    "provider_error_crash": ProviderError,
    "provider_error_start": ProviderError,
    "configuration_error_unclosed_block": ConfigurationError,
    "configuration_error_missing_value": ConfigurationError,
    "configuration_error_unsupported_argument": ConfigurationError,
    "configuration_error_undeclared_reference": ConfigurationError,
    "configuration_error_variable_validation": ConfigurationError,
    "configuration_error_precondition": ConfigurationError,
    "generic_missing_var_file": TerraformError,
    "generic_init_provider_unavailable": TerraformError,
    "generic_init_backend_changed": TerraformError,
}
# Terraform 1.0.3 skips its stale check for a plan made before any state existed: the older
# plan is applied, and here only the provider (object already exists) stops it.
EXPECTED_TYPE_BY_VERSION = {(TF_1_0, "stale_plan_from_empty_state"): ProviderError}

TITLE_1_0 = {
    "state_lock": "Error acquiring the state lock",
    "stale_plan": "Saved plan is stale",
    "stale_plan_other_lineage": "Saved plan is stale",
    "stale_plan_from_empty_state": "Object already exists",
    "init_required": "Could not load plugin",
    "init_required_module": "Module not installed",
    "init_required_backend": 'Backend initialization required, please run "terraform init"',
    "provider_error_invalid_name": "Invalid demo_object.name",
    "provider_error_apply_write": "Plugin error",
    "provider_error_apply_configure": "The demo provider's cloud folder is not a folder",
    "provider_error_apply_exists": "Object already exists",
    "provider_error_crash": "Plugin did not respond",
    "provider_error_start": "Could not load plugin",
    "configuration_error_unclosed_block": "Argument or block definition required",
    "configuration_error_missing_value": "Invalid expression",
    "configuration_error_unsupported_argument": "Unsupported argument",
    "configuration_error_undeclared_reference": "Reference to undeclared resource",
    "configuration_error_variable_validation": "Invalid value for variable",
    "configuration_error_precondition": "Unsupported block type",
    "generic_missing_var_file": "Failed to read variables file",
    "generic_init_provider_unavailable": "Failed to query available provider packages",
    "generic_init_backend_changed": "Backend configuration changed",
}
# Where Terraform 1.11 words the same failure differently (see the fixtures README).
TITLE_1_11 = {
    **TITLE_1_0,
    "stale_plan_other_lineage": "Saved plan does not match the given state",
    "stale_plan_from_empty_state": "Saved plan is stale",
    "init_required": "Inconsistent dependency lock file",
    "provider_error_start": "Failed to load plugin schemas",
    "configuration_error_unclosed_block": "Unclosed configuration block",
    "configuration_error_precondition": "Resource precondition failed",
}
TITLES = {TF_1_0: TITLE_1_0, TF_1_11: TITLE_1_11}

HINT_WORDS = {
    StateLockError: "force-unlock",
    StalePlanError: "plans again",
    InitRequiredError: "terraform init",
    ProviderError: "provider",
    ConfigurationError: "fix it and push",
    TerraformError: "read the Terraform output",
}


@dataclass(frozen=True)
class Fixture:
    case: str
    version: str  # major.minor of the Terraform that printed it
    argv: list[str]
    exit_code: int
    lock_id: str | None
    output: str

    @property
    def id(self) -> str:
        return f"tf{self.version}-{self.case}"

    def classify(self) -> TerraformError:
        return classify(self.output, argv=self.argv, exit_code=self.exit_code)

    @property
    def expected_type(self) -> type[TerraformError]:
        return EXPECTED_TYPE_BY_VERSION.get((self.version, self.case), EXPECTED_TYPE[self.case])

    @property
    def title(self) -> str:
        return TITLES[self.version][self.case]


def load(path: Path) -> Fixture:
    header_text, output = path.read_text().split(OUTPUT_MARKER, 1)
    header = dict(line.removeprefix("# ").split(": ", 1) for line in header_text.splitlines())
    return Fixture(
        case=path.stem,
        version=".".join(header["terraform"].split(".")[:2]),
        argv=header["command"].split(),
        exit_code=int(header["exit code"]),
        lock_id=header.get("lock id"),
        output=output,
    )


ALL = [load(path) for path in sorted(FIXTURES.rglob("*.txt"))]


def fixtures(*cases: str) -> list[Fixture]:
    return [fixture for fixture in ALL if not cases or fixture.case in cases]


def by_id(fixture: Fixture) -> str:
    return fixture.id


def the(case: str, version: str) -> Fixture:
    return next(fixture for fixture in ALL if fixture.case == case and fixture.version == version)


# --------------------------------------------------------------------------- the fixtures themselves


def test_fixtures_cover_every_case_for_both_terraform_versions() -> None:
    for version in (TF_1_0, TF_1_11):
        assert {fixture.case for fixture in ALL if fixture.version == version} == set(EXPECTED_TYPE)


@pytest.mark.parametrize("fixture", ALL, ids=by_id)
def test_fixtures_are_real_failures_free_of_machine_paths(fixture: Fixture) -> None:
    assert fixture.exit_code != 0
    assert fixture.argv[0] == "terraform" and "-no-color" in fixture.argv
    assert "/tmp/" not in fixture.output
    assert f"Error: {fixture.title}" in fixture.output


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize("fixture", ALL, ids=by_id)
def test_every_real_failure_is_classified_as_its_kind(fixture: Fixture) -> None:
    assert type(fixture.classify()) is fixture.expected_type


@pytest.mark.parametrize("fixture", ALL, ids=by_id)
def test_the_message_names_terraforms_error_title(fixture: Fixture) -> None:
    message = fixture.classify().args[0]
    assert fixture.title in message


@pytest.mark.parametrize("fixture", ALL, ids=by_id)
def test_the_error_text_shows_command_exit_code_output_tail_and_hint(fixture: Fixture) -> None:
    error = fixture.classify()
    text = str(error)
    last_line = fixture.output.rstrip().splitlines()[-1].strip()
    assert f"command: {' '.join(fixture.argv)}" in text
    assert f"exit code: {fixture.exit_code}" in text
    assert "output (tail):" in text and last_line in text
    assert f"Error: {fixture.title}" in text
    assert f"hint: {error.hint}" in text


@pytest.mark.parametrize("fixture", ALL, ids=by_id)
def test_the_hint_says_what_to_do_for_its_kind(fixture: Fixture) -> None:
    error = fixture.classify()
    assert HINT_WORDS[type(error)] in error.hint


@pytest.mark.parametrize("fixture", fixtures("state_lock"), ids=by_id)
def test_a_held_state_lock_is_a_retryable_lock_error_with_its_id(fixture: Fixture) -> None:
    error = fixture.classify()
    assert isinstance(error, StateLockError) and isinstance(error, RetryableError)
    assert fixture.lock_id and error.lock_id == fixture.lock_id  # the ID in the lock file on disk
    assert fixture.lock_id in error.args[0]
    assert f"terraform force-unlock {fixture.lock_id}" in error.hint


@pytest.mark.parametrize(
    "fixture", [fixture for fixture in ALL if fixture.expected_type is StalePlanError], ids=by_id
)
def test_a_stale_saved_plan_is_terminal_and_replanned_not_retried(fixture: Fixture) -> None:
    error = fixture.classify()
    assert isinstance(error, TerminalError) and not isinstance(error, RetryableError)
    assert "plans again instead of applying" in error.hint


def test_terraform_1_0_does_not_catch_a_stale_plan_made_before_any_state_existed() -> None:
    old, new = the("stale_plan_from_empty_state", TF_1_0), the("stale_plan_from_empty_state", TF_1_11)
    assert "demo_object.site: Creating..." in old.output  # 1.0.3 went ahead with the older plan
    assert isinstance(old.classify(), ProviderError)
    assert isinstance(new.classify(), StalePlanError)


@pytest.mark.parametrize(
    "fixture", fixtures("init_required", "init_required_module", "init_required_backend"), ids=by_id
)
def test_a_directory_that_needs_init_asks_for_one_re_init(fixture: Fixture) -> None:
    error = fixture.classify()
    assert isinstance(error, InitRequiredError)
    assert error.args[0].startswith("the working directory needs init")


@pytest.mark.parametrize("fixture", fixtures("generic_init_backend_changed"), ids=by_id)
def test_init_failing_itself_is_not_mistaken_for_a_directory_that_needs_init(fixture: Fixture) -> None:
    # The output says `terraform init -reconfigure`; from `init` that is no reason to init again.
    assert type(fixture.classify()) is TerraformError
    as_if_from_plan = classify(fixture.output, argv=["terraform", "plan"], exit_code=1)
    assert isinstance(as_if_from_plan, InitRequiredError)


@pytest.mark.parametrize("fixture", fixtures("provider_error_start"), ids=by_id)
def test_a_provider_that_cannot_start_is_a_provider_error_even_when_terraform_says_init(
    fixture: Fixture,
) -> None:
    # 1.0.3 wraps it in "Could not load plugin ... run terraform init"; 1.11 wraps the key
    # phrase over two lines ("Unrecognized remote\nplugin message").
    error = fixture.classify()
    assert isinstance(error, ProviderError)
    assert error.args[0].startswith("the provider could not be started")


@pytest.mark.parametrize("fixture", fixtures("provider_error_apply_configure"), ids=by_id)
def test_a_provider_refusing_its_own_configuration_is_a_provider_error(fixture: Fixture) -> None:
    assert 'with provider["registry.terraform.io/tfops/demo"],' in fixture.output
    assert isinstance(fixture.classify(), ProviderError)


@pytest.mark.parametrize("fixture", fixtures("configuration_error_variable_validation"), ids=by_id)
def test_a_failed_validation_rule_is_the_stacks_code_not_a_provider(fixture: Fixture) -> None:
    assert isinstance(fixture.classify(), ConfigurationError)


# --------------------------------------------------------------------------- variations of real output


@pytest.mark.parametrize(
    "address",
    [
        'module.app["blue"].demo_object.bad',
        "module.app.module.db.demo_object.bad[0]",
        'demo_object.bad["a key with spaces"]',
        "data.demo_wait.slow",
        'module.app.provider["registry.terraform.io/tfops/demo"]',
    ],
)
def test_provider_diagnostics_are_recognised_for_any_object_address(address: str) -> None:
    fixture = the("provider_error_invalid_name", TF_1_11)
    output = fixture.output.replace("with demo_object.bad,", f"with {address},")
    assert f"with {address}," in output
    assert isinstance(classify(output, argv=fixture.argv, exit_code=1), ProviderError)


@pytest.mark.parametrize("address", ["var.environment", "local.name", "output.site", "module.app"])
def test_diagnostics_about_terraforms_own_objects_are_configuration_errors(address: str) -> None:
    fixture = the("provider_error_invalid_name", TF_1_11)
    output = fixture.output.replace("with demo_object.bad,", f"with {address},")
    assert isinstance(classify(output, argv=fixture.argv, exit_code=1), ConfigurationError)


def test_several_errors_are_counted_after_the_first_title() -> None:
    first, second = (
        the("configuration_error_unsupported_argument", TF_1_11),
        the("configuration_error_undeclared_reference", TF_1_11),
    )
    error = classify(first.output + second.output, argv=first.argv, exit_code=1)
    assert error.args[0] == "invalid Terraform configuration: Unsupported argument (and 1 more error)"


def test_the_lock_id_is_read_from_the_lock_info_not_from_earlier_lines() -> None:
    fixture = the("state_lock", TF_1_11)
    output = "  ID: not-the-lock\n" + fixture.output
    assert lock_id_in(output) == fixture.lock_id


def test_output_without_an_error_title_still_says_where_to_look() -> None:
    error = classify("panic: runtime error: index out of range\n", argv=["terraform", "apply"], exit_code=11)
    assert type(error) is TerraformError
    assert error.args[0] == "terraform apply failed: see the output"
    assert "exit code: 11" in str(error)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["terraform", "plan", "-out=x"], "plan"),
        (["terraform", "-chdir=stack", "apply", "x.tfplan"], "apply"),
        (["/usr/bin/terraform"], None),
        ([], None),
    ],
)
def test_the_subcommand_is_the_first_word_after_global_options(argv: list[str], expected: str | None) -> None:
    assert subcommand(argv) == expected

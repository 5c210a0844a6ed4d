"""Stack names and paths: the rules config and discovery share."""

from __future__ import annotations

import pytest

from tfops.errors import StackPathError
from tfops.naming import validate_stack_path


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("stacks/app", "stacks/app"),
        ("./stacks//app/", "stacks/app"),
        ("stacks/x/../app", "stacks/app"),
        (".", "."),
        ("stacks/*", "stacks/*"),
    ],
)
def test_stack_paths_are_normalised_to_relative_posix(given, expected):
    assert validate_stack_path(given) == expected


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/../../x", "..", "~/x", "C:/infra", "a\\b", "", "  "])
def test_stack_paths_that_leave_the_repository_are_refused(bad):
    with pytest.raises(StackPathError):
        validate_stack_path(bad)

"""`depends_on` in tfops.yaml: errors with file, field and reason; discovery refuses what only the
checkout can tell; resolution into Stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfops.config import load_settings
from tfops.errors import ConfigError
from tfops.stacks import Refusal, discover


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tfops.yaml"
    path.write_text(text + "\n")
    return path


def repo_with(tmp_path: Path, *folders: str) -> Path:
    for folder in folders:
        (tmp_path / "repo" / folder).mkdir(parents=True)
        (tmp_path / "repo" / folder / "main.tf").write_text("# terraform\n")
    return tmp_path / "repo"


@pytest.mark.parametrize(
    ("yaml_text", "field", "reason"),
    [
        (
            "stacks:\n  - path: network\n  - path: app\n    depends_on: [netwrk]",
            "stacks.1.depends_on",
            "'netwrk' is not the name of a stack entry",
        ),
        (
            "stacks:\n  - {path: a, depends_on: [c]}\n  - {path: b, depends_on: [a]}\n"
            "  - {path: c, depends_on: [b]}",
            "stacks",
            "depends_on forms a cycle: a -> c -> b -> a",
        ),
        ("stacks:\n  - {path: app, depends_on: [app]}", "stacks.0", "'app' cannot depend on itself"),
        ("stacks:\n  - {path: app, depends_on: ['no/slash']}", "stacks.0.depends_on.0", "no/slash"),
    ],
)
def test_an_unknown_name_a_cycle_or_a_stack_naming_itself_is_a_config_error(
    tmp_path, yaml_text, field, reason
):
    path = write(tmp_path, yaml_text)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})
    message = str(caught.value)

    assert f"{path}: stacks" in message and f"{field}:" in message  # the file, then the field
    assert reason in message


def test_with_discovered_stacks_an_unknown_name_refuses_the_stack_at_discovery(tmp_path):
    root = repo_with(tmp_path, "stacks/network", "stacks/app", "stacks/web")
    path = write(
        tmp_path,
        "stacks:\n  - path: stacks/app\n    depends_on: [netwrk]\n  - {path: stacks/web, depends_on: [app]}\n"
        "  - discover: 'stacks/*'",
    )
    settings = load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})  # netwrk might be discovered

    found = discover(root, settings.stacks, settings.defaults)

    assert [stack.name for stack in found.stacks] == ["network"]
    refused = {item.name: item for item in found.refused}
    assert refused["app"].reason is Refusal.BROKEN_ORDER
    assert "'netwrk'" in refused["app"].detail and "depends_on" in refused["app"].detail
    assert "'app'" in refused["web"].detail, "web would go without its upstream"
    assert "depends_on" in refused["app"].hint


def test_a_discovered_upstream_resolves_and_order_reaches_the_stack(tmp_path):
    root = repo_with(tmp_path, "stacks/network", "apps/app")
    path = write(
        tmp_path,
        "stacks:\n  - {path: apps/app, depends_on: [network, network]}\n  - discover: 'stacks/*'",
    )
    settings = load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})

    found = {stack.name: stack for stack in discover(root, settings.stacks, settings.defaults).stacks}

    assert found["app"].depends_on == ("network",)
    assert found["network"].depends_on == ()

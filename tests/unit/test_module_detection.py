"""Module-aware change detection: a change to a local module touches every stack that calls it."""

from __future__ import annotations

from pathlib import Path

from tfops.changes import ModuleAwareDetector, local_module_dirs
from tfops.models import Stack


def write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def module_call(source: str) -> str:
    return f'module "m" {{\n  source = "{source}"\n}}\n'


def make_repo(root: Path) -> list[Stack]:
    write(root, "service/main.tf", module_call("../lib/naming"))
    write(root, "lib/naming/main.tf", "locals {}\n")
    write(root, "lib/unused/main.tf", "locals {}\n")
    write(root, "stacks/web/main.tf", module_call("../../service"))
    write(root, "stacks/api/main.tf", module_call("../../service") + module_call("hashicorp/consul/aws"))
    write(root, "stacks/jobs/main.tf", 'resource "demo_object" "x" {}\n')
    write(root, "stacks/escape/main.tf", module_call("../../../outside"))
    return [Stack(name=name, path=f"stacks/{name}") for name in ("api", "escape", "jobs", "web")]


def names(stacks):
    return [stack.name for stack in stacks]


def test_a_shared_module_change_touches_every_stack_that_calls_it(tmp_path):
    stacks = make_repo(tmp_path)

    affected = ModuleAwareDetector(tmp_path).affected(stacks, ["service/variables.tf"])

    assert names(affected) == ["api", "web"]


def test_modules_called_by_modules_count_too(tmp_path):
    stacks = make_repo(tmp_path)

    assert names(ModuleAwareDetector(tmp_path).affected(stacks, ["lib/naming/main.tf"])) == ["api", "web"]
    assert names(ModuleAwareDetector(tmp_path).affected(stacks, ["lib/unused/main.tf"])) == []


def test_a_change_inside_a_stack_still_touches_only_that_stack(tmp_path):
    stacks = make_repo(tmp_path)

    assert names(ModuleAwareDetector(tmp_path).affected(stacks, ["stacks/jobs/main.tf"])) == ["jobs"]


def test_registry_modules_and_paths_outside_the_repository_are_not_dependencies(tmp_path):
    make_repo(tmp_path)

    assert local_module_dirs(tmp_path, "stacks/api") == {"service", "lib/naming"}
    assert local_module_dirs(tmp_path, "stacks/escape") == frozenset()


def test_module_calls_in_files_or_folders_symlinked_outside_the_repository_are_not_followed(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    make_repo(repo)
    write(outside, "calls.tf", module_call("../lib/naming"))  # read through the link, it calls a module
    write(outside, "mod/main.tf", module_call("../../lib/unused"))
    (repo / "stacks" / "jobs" / "calls.tf").symlink_to(outside / "calls.tf")
    (repo / "stacks" / "mod").symlink_to(outside / "mod")
    write(repo, "stacks/linker/main.tf", module_call("../mod"))

    assert local_module_dirs(repo, "stacks/jobs") == frozenset()
    assert local_module_dirs(repo, "stacks/linker") == frozenset()

"""The change index answers what ModuleAwareDetector answers, from maps kept between commits."""

from __future__ import annotations

from test_module_detection import make_repo, module_call, write

from tfops.changeindex import ModuleIndex, StackIndex
from tfops.changes import ModuleAwareDetector
from tfops.gitdiff import TreeChanges
from tfops.models import Stack

PATHS = [
    "service/variables.tf", "lib/naming/main.tf", "lib/unused/main.tf", "stacks/jobs/main.tf",
    "stacks/web/x/y.txt", "stacks/webby/main.tf", "shared.tfvars", "README.md", "./stacks/api/main.tf",
    "stacks", "service",
]  # fmt: skip


def _with_extras(root) -> list[Stack]:
    stacks = make_repo(root)
    write(root, "main.tf", "locals {}\n")
    return [
        *stacks,
        Stack(name="root", path="."),
        Stack(name="vars", path="stacks/vars", var_files=("../../shared.tfvars",)),
    ]


def test_every_changed_path_touches_the_stacks_the_module_aware_detector_names(tmp_path):
    stacks = _with_extras(tmp_path)
    index = StackIndex(stacks, ModuleIndex(tmp_path))
    detector = ModuleAwareDetector(tmp_path)

    for path in PATHS:
        expected = {stack.name for stack in detector.affected(stacks, [path])}
        assert index.touched([path]) == expected, path
    assert index.touched([]) == set()


def test_a_module_call_added_by_an_edit_is_followed_after_the_index_advances(tmp_path):
    stacks = make_repo(tmp_path)
    modules = ModuleIndex(tmp_path)
    assert "jobs" not in StackIndex(stacks, modules).touched(["lib/unused/main.tf"])

    write(tmp_path, "stacks/jobs/main.tf", module_call("../../lib/unused"))
    modules.advance(TreeChanges(paths=frozenset({"stacks/jobs/main.tf"}), contents_only=True))

    assert StackIndex(stacks, modules).touched(["lib/unused/main.tf"]) == {"jobs"}


def test_a_new_folder_clears_the_index_so_a_call_to_it_counts_once_it_exists(tmp_path):
    stacks = make_repo(tmp_path)
    write(tmp_path, "stacks/jobs/main.tf", module_call("../../lib/later"))
    modules = ModuleIndex(tmp_path)
    assert StackIndex(stacks, modules).touched(["lib/later/main.tf"]) == set()  # not there: no call

    write(tmp_path, "lib/later/main.tf", "locals {}\n")
    modules.advance(TreeChanges(paths=frozenset({"lib/later/main.tf"}), contents_only=False))

    assert StackIndex(stacks, modules).touched(["lib/later/main.tf"]) == {"jobs"}

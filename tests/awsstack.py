"""The awsssm test provider in the mirror, stacks that use it, and what it recorded.

- :func:`add_to_mirror` lays out ``tfops-test/awsssm`` in a mirror (or plugin cache) that
  ``tfops.demo.mirror.build_mirror`` made: a stable launcher running ``python -m awsprovider.provider``.
- :func:`ssm_stack` writes Terraform code for a stack of SSM parameters.
- :func:`read_record` parses the provider's record file (one JSON object per operation).
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tfops
from tfops.demo.mirror import _write_if_changed, package_dir

SOURCE = "tfops-test/awsssm"
VERSION = "0.1.0"
TESTS_DIR = Path(__file__).resolve().parent


def launcher_script(python: str) -> str:
    # Like the demo provider's: a stable script, so the hash in .terraform.lock.hcl never changes.
    source_root = Path(tfops.__file__).resolve().parent.parent
    path = f"{shlex.quote(str(TESTS_DIR))}:{shlex.quote(str(source_root))}"
    return (
        "#!/bin/sh\n"
        "# tfops awsssm test provider launcher, written by tests/awsstack.py.\n"
        f'PYTHONPATH={path}${{PYTHONPATH:+:"$PYTHONPATH"}}\n'
        "export PYTHONPATH\n"
        f'exec {shlex.quote(python)} -m awsprovider.provider "$@"\n'
    )


def add_to_mirror(mirror_dir: Path, *, python: str = sys.executable) -> Path:
    """Add the awsssm provider to ``mirror_dir`` (idempotent); returns ``mirror_dir``."""
    directory = package_dir(Path(mirror_dir).absolute(), SOURCE, VERSION)
    _write_if_changed(directory / f"terraform-provider-awsssm_v{VERSION}", launcher_script(python), 0o755)
    return Path(mirror_dir)


def ssm_stack(
    parameters: Mapping[str, str],
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    record_file: Path | None = None,
    extra: str = "",
) -> str:
    """Terraform code for ``awsssm_parameter`` resources, {parameter name: value}.

    Resource addresses are ``awsssm_parameter.<name without slashes>``; settings left None come
    from the provider's environment (AWS_ENDPOINT_URL, AWS_REGION, TFOPS_TEST_AWS_RECORD).
    """
    settings = {"endpoint_url": endpoint_url, "region": region, "record_file": record_file}
    provider = "".join(f"  {key} = {json.dumps(str(value))}\n" for key, value in settings.items() if value)
    blocks = [
        "terraform {\n  required_providers {\n"
        f'    awsssm = {{ source = "{SOURCE}", version = "{VERSION}" }}\n  }}\n}}\n',
        f'provider "awsssm" {{\n{provider}}}\n',
    ]
    for name, value in parameters.items():
        blocks.append(
            f'resource "awsssm_parameter" "{resource_name(name)}" {{\n'
            f"  name  = {json.dumps(name)}\n  value = {json.dumps(value)}\n}}\n"
        )
    if extra:
        blocks.append(textwrap.dedent(extra))
    return "\n".join(blocks)


def resource_name(parameter: str) -> str:
    return parameter.strip("/").replace("/", "_").replace(".", "_") or "root"


def read_record(path: Path) -> list[dict[str, Any]]:
    """Every operation the provider recorded, in order; [] when it recorded none."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def access_keys(path: Path, *ops: str) -> set[str | None]:
    """The access key ids the provider used for ``ops`` (all operations when none are given)."""
    return {entry["access_key_id"] for entry in read_record(path) if not ops or entry["op"] in ops}

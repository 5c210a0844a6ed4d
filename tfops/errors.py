"""The exception tree of tfops.

Every error a user can meet says what happened, where, and what to do. The tree
splits on one question the scheduler must answer: may this be tried again by
itself?

    TfopsError                      base; ``hint`` says what to do
    ├── TerminalError               retrying will not help; a person must act
    │   ├── ConfigError             bad tfops.yaml / environment (file, field, reason)
    │   ├── StackPathError          a stack path escapes the repository or is missing
    │   ├── PlanFormatError         `show -json` in a format this tfops does not read
    │   ├── UnknownCommitError      a commit that is not on the fetched branch
    │   ├── UnknownStackError       a command named a stack the configuration does not have
    │   ├── ProcessError            a process failed (command, exit code, output tail)
    │   │   └── TerraformError      Terraform failed; subclasses say how
    │   │       ├── ConfigurationError   HCL/validation errors in the stack's code
    │   │       ├── ProviderError        a provider failed (API error, crash, bad credentials)
    │   │       ├── StalePlanError       the saved plan no longer matches state; re-plan
    │   │       └── InitRequiredError    the working directory needs `terraform init`
    │   ├── AwsRoleError            a role tfops cannot assume (role ARN, AWS error code)
    │   ├── AwsSecretError          a secret reference tfops cannot read (never its value)
    │   ├── RunTimedOut             the run passed its wall-clock limit
    │   └── IllegalTransition       a status change the transition table forbids (a bug)
    └── RetryableError              transient; the next attempt may succeed
        ├── GitFetchError           the remote is unreachable or refused us
        ├── GitError                a local Git command failed
        │   └── GitTimedOut         ... or ran past repo.fetch_timeout
        └── StateLockError          another process holds the state lock
                                    (a TerraformError too: it has command and output)

``StateLockError`` and ``InitRequiredError`` are handled inside a run (wait for the
next schedule; re-init once); everything else ends the run ``failed`` with its
message recorded. ``RunCancelled`` is not an error of the run's making: it ends
the run ``interrupted``.
"""

from __future__ import annotations


class TfopsError(Exception):
    """Base of every error tfops raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message}\n  hint: {self.hint}" if self.hint else message


class TerminalError(TfopsError):
    """Retrying will not help; the cause must be fixed by a person."""


class RetryableError(TfopsError):
    """Transient; the same action may succeed later."""


class RunCancelled(TfopsError):
    """The run was stopped on purpose (shutdown); it ends `interrupted`. Neither terminal nor retryable."""


# --- terminal: a person must act ----------------------------------------------------------------------


class ConfigError(TerminalError):
    """tfops.yaml or the environment is wrong; the message names the field and the reason."""

    hint = "fix the configuration and run `tfops check-config`"


class StackPathError(ConfigError):
    """A stack path tfops cannot use: empty, absolute, or leaving the repository (see `stacks`)."""

    hint = "stack paths are relative to the repository root and must stay inside it"


class PlanFormatError(TerminalError):
    """`terraform show -json` printed no JSON, or a format_version this tfops cannot read."""

    hint = "use a Terraform version whose `show -json` format_version is 0.x or 1.x"


class UnknownCommitError(TerminalError):
    """A commit that is not in the checkout, or not on the branch tfops fetched."""

    hint = "tfops only plans commits it fetched itself from the configured branch"


class UnknownStackError(TerminalError):
    """The mistake is the argument, not the configuration: the message lists the known stacks."""

    hint = "name one of the known stacks (`tfops status` lists them)"


class RunTimedOut(TerminalError):
    """The run used up `terraform.timeout`; it ends `timed_out`, not `failed`."""

    hint = "raise terraform.timeout, or find what Terraform waits on in the run log"


class IllegalTransition(TerminalError):
    """A run status change that `models.ALLOWED_TRANSITIONS` forbids: a bug in tfops, not a race
    (a race, where another process moved the run first, is the store's `InvalidTransition`)."""

    hint = "this is a bug in tfops: report it with the run's events (`tfops show RUN_ID`)"


# --- AWS: roles and secrets (tfops.aws) ---------------------------------------------------------------


class AwsRoleError(TerminalError):
    """STS refused to give tfops a stack's role: "cannot assume arn:…: AccessDenied: …". Names the
    role and AWS's error code and message; never a credential. The run fails before Terraform."""

    hint = (
        "check the role's trust policy (it must trust tfops' own identity), the external id, "
        "and the role ARN; `tfops check-config --aws` assumes every role once"
    )

    def __init__(self, message: str, *, reason: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason or message  # AWS's "Code: message", for check-config's table


class AwsSecretError(TerminalError):
    """A secret reference (`ssm:/path`, `secretsmanager:id#key`) could not be read or is malformed:
    missing, the wrong type, a JSON key absent, or access denied. Names the reference, never the value."""

    hint = (
        "check that the parameter or secret exists in the configured region, that the JSON key is "
        "there, and that the identity reading it (the plan role or tfops' own) may read and decrypt it"
    )


# --- processes and Terraform -------------------------------------------------------------------------


class ProcessError(TerminalError):
    """A process ended badly. Carries what a person needs to see."""

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | tuple[str, ...] = (),
        exit_code: int | None = None,
        output_tail: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = tuple(argv)
        self.exit_code = exit_code
        self.output_tail = output_tail

    def __str__(self) -> str:
        lines = [super(TfopsError, self).__str__()]
        if self.argv:
            lines.append(f"  command: {' '.join(self.argv)}")
        if self.exit_code is not None:
            lines.append(f"  exit code: {self.exit_code}")
        if self.output_tail:
            lines.append("  output (tail):")
            lines.extend(f"    {line}" for line in self.output_tail.rstrip().splitlines())
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class TerraformError(ProcessError):
    """Terraform failed. `terraform.diagnostics.classify` picks the subclass from its output."""

    hint = "read the Terraform output above; the full log is in the run's log file"


class ConfigurationError(TerraformError):
    """Terraform rejected the stack's code at this commit (HCL or validation errors)."""

    hint = "the stack's Terraform code is invalid at this commit; fix it and push"


class ProviderError(TerraformError):
    """A provider could not be started, or one of its calls failed (API error, crash, credentials)."""

    hint = "a provider call failed: check credentials, quotas and the provider's message"


class StalePlanError(TerraformError):
    """Terraform refused the saved plan: the run is superseded rather than failed."""

    hint = "state changed since the plan was made; tfops plans again instead of applying it"


class InitRequiredError(TerraformError):
    """Terraform asks for `terraform init`: the runner re-initialises once and plans again."""

    hint = "the working directory needs `terraform init`; tfops re-initialises once by itself"


# --- retryable: the next attempt may succeed -----------------------------------------------------------


class StateLockError(TerraformError, RetryableError):
    """Another process holds the state lock. A TerraformError too, for its command and output;
    `lock_id` is set when Terraform printed it, and completes the hint."""

    hint = (
        "another Terraform holds the state lock; tfops tries again at the next schedule. "
        "If no Terraform is running, release it with `terraform force-unlock LOCK_ID`"
    )

    def __init__(self, message: str, *, lock_id: str | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.lock_id = lock_id


class GitFetchError(RetryableError):
    """A clone or fetch of the remote failed: unreachable, refused, or without the branch."""

    hint = "check the repository URL, network and credentials; tfops retries with backoff"


class GitError(RetryableError):
    """A local Git command (checkout, worktree, rev-parse…) failed; the next attempt may succeed."""

    hint = "look at the checkout under data_dir; tfops tries again at the next poll or run"


class GitTimedOut(GitError):
    """A Git command ran longer than `repo.fetch_timeout` and was stopped (SIGINT, then SIGKILL)."""

    hint = "raise repo.fetch_timeout, or find what Git waits on (a lock, a hook, the disk)"

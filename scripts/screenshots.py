"""Make the README's pictures of the status page, docs/overview.png and docs/run.png, from the demo.

It lays out `tfops demo`'s setup (the example stacks web, api and jobs) in a temporary folder,
serves it with `tfops serve` on a free loopback port with an API read token, lets the first
deploys land, pushes a change to `api` and changes its object behind Terraform's back, waits for
the drift check, then logs in with headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright, as the browser tests do) and saves the overview and the drift run's page.

    .venv/bin/python scripts/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import browser  # noqa: E402 - tests/browser.py: the Chromium launch the browser tests use
from harness import wait_for  # noqa: E402
from served import READ_TOKEN, ServedDaemon, add_http_and_tokens, free_port  # noqa: E402

from tfops.demo.setup import STACKS, prepare  # noqa: E402

VIEWPORT = {"width": 1280, "height": 720}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default: docs)")
    out = parser.parse_args().out
    reason = browser.unavailable()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tfops-screenshots-") as temporary:
        daemon, layout = _serve_the_demo(Path(temporary))
        try:
            run_id = _story(daemon, layout)
            _pictures(daemon, run_id, out)
        finally:
            daemon.stop()
    print(f"wrote {out / 'overview.png'} and {out / 'run.png'}")
    return 0


def _serve_the_demo(root: Path):
    layout, _ = prepare(root / "demo")
    port = free_port()
    add_http_and_tokens(layout.config, port)
    home = root / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    daemon = ServedDaemon(layout.config, env, port, layout.log).start()
    wait_for(lambda: _deployed(daemon) == set(STACKS), timeout=300, what="the first deploys")
    return daemon, layout


def _deployed(daemon: ServedDaemon) -> set[str]:
    """Stacks with an applied deploy (the demo's drift checks start right after)."""
    return {run["stack"] for run in daemon.runs() if run["kind"] == "deploy" and run["status"] == "applied"}


def _story(daemon: ServedDaemon, layout) -> int:
    """A merged change to `api`, applied; then drift on it. Returns the drift run's id."""
    import git

    main_tf = layout.work / "stacks" / "api" / "main.tf"
    main_tf.write_text(main_tf.read_text().replace("api v1", "api v2"))
    work = git.Repo(layout.work)
    work.git.commit("-qam", "api v2: new welcome message")
    work.git.push("-q")
    sha = work.head.commit.hexsha
    wait_for(
        lambda: any(r["commit_sha"] == sha and r["status"] == "applied" for r in daemon.runs("api")),
        timeout=180,
        what="api v2 applied",
    )
    config = layout.cloud / "api-config.json"
    config.write_text(config.read_text().replace("api v2", "changed by hand"))
    run = daemon.wait_for_run(daemon.queue_drift_check("api"))
    if run["status"] != "planned":
        raise SystemExit(f"the drift check on api ended {run['status']}, not with drift")
    return int(run["id"])


def _pictures(daemon: ServedDaemon, run_id: int, out: Path) -> None:
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    with browser.chromium() as chromium:
        page = chromium.new_context(viewport=VIEWPORT).new_page()
        browser.log_in(page, daemon.base, READ_TOKEN)
        expect(page.locator('tr[data-stack="api"]')).to_have_attribute("data-drift", "drifted")
        page.screenshot(path=out / "overview.png")
        page.goto(f"{daemon.base}/runs/{run_id}")
        expect(page.locator('section[data-section="drift"]')).to_be_visible()
        # Down to the log's link: the log is Terraform's output, and it names this
        # machine's folders, which a picture in the repository need not show.
        log = page.locator('section[data-section="log"] pre').first.bounding_box()
        height = int(log["y"] - 4) if log else VIEWPORT["height"]
        page.screenshot(path=out / "run.png", full_page=True, clip=_top(height))


def _top(height: int) -> dict[str, float]:
    return {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height}


if __name__ == "__main__":
    sys.exit(main())

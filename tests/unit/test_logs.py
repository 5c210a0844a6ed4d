"""Log lines about a run carry its id and stack, in text and in JSON."""

from __future__ import annotations

import io
import json
import logging
import time

from tfops.errors import StackPathError
from tfops.logs import make_handler, run_context


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.logs.{fmt}")
    logger.handlers[:] = [make_handler(logging.StreamHandler(stream), fmt)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_inside_a_run_carry_run_id_and_stack():
    logger, stream = capture("json")
    with run_context(42, "network"):
        logger.info("init skipped")
    logger.info("outside any run")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["run_id"], inside["stack"], inside["message"]) == (42, "network", "init skipped")
    assert "run_id" not in outside


def test_text_lines_inside_a_run_name_it():
    logger, stream = capture("text")
    with run_context(7, "web"):
        logger.warning("fetch is slow")

    assert "[run 7 web] fetch is slow" in stream.getvalue()


def test_an_error_in_a_scheduler_job_reaches_the_daemons_log_while_the_http_server_runs(tmp_path):
    """The daemon's order: logging set up first, then uvicorn started, then the jobs run on their
    own threads. uvicorn must leave tfops' handler and loggers alone (it gets `log_config=None`)."""
    from tfops.logs import setup_logging
    from tfops.scheduler import Scheduler, StackRegistry
    from tfops.stacks import Discovery
    from tfops.web.app import create_app
    from tfops.web.server import HttpOptions, WebServer

    class FailingPoller:  # what discovery raised before refusals were data: it was lost on every tick
        def poll(self, *args, **kwargs):
            raise StackPathError("the poll broke")

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    setup_logging("info", "json", handler=logging.StreamHandler(stream))
    server = WebServer(create_app([]), HttpOptions(host="127.0.0.1", port=0))
    scheduler = Scheduler(
        poller=FailingPoller(),  # type: ignore[arg-type]
        queue=None,  # type: ignore[arg-type]
        registry=StackRegistry(discover=lambda root: Discovery(), root=tmp_path),
        store=None,  # type: ignore[arg-type]
        poll_interval=3600,
    )
    try:
        server.start()
        scheduler.start()  # the first poll runs at once
        deadline = time.monotonic() + 10
        while "the poll broke" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        scheduler.stop()
        server.stop()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "error" and line["logger"] == "tfops.scheduler"]
    assert errors and "the poll broke" in errors[0]["message"]

"""Log lines about a run carry its id and stack, in text and in JSON."""

from __future__ import annotations

import io
import json
import logging

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

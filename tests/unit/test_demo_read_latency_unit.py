"""The demo provider's simulated API latency: parsed from the provider block or the environment,
waited on every resource read, nothing by default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tf.iface import CreateContext, ReadContext
from tf.types import Unknown
from tf.utils import Diagnostics

from tfops.demo import provider as demo


def configured(tmp_path: Path, **config) -> tuple[demo.DemoProvider, Diagnostics]:
    provider = demo.DemoProvider()
    diags = Diagnostics()
    provider.configure_provider(diags, {"root": str(tmp_path / "cloud"), **config})
    return provider, diags


@pytest.mark.parametrize(
    ("given", "seconds"), [("300ms", 0.3), ("1.5s", 1.5), ("2", 2.0), (" 40ms ", 0.04), ("0ms", 0.0)]
)
def test_a_read_latency_is_milliseconds_or_seconds(given, seconds):
    assert demo.resolve_read_latency(given, {}) == (pytest.approx(seconds), None)


def test_without_a_read_latency_reads_do_not_wait():
    assert demo.resolve_read_latency(None, {}) == (0.0, None)
    assert demo.resolve_read_latency("", {demo.LATENCY_ENV_VAR: "  "}) == (0.0, None)


def test_the_read_latency_comes_from_the_provider_block_before_the_environment():
    assert demo.resolve_read_latency("20ms", {demo.LATENCY_ENV_VAR: "5s"}) == (pytest.approx(0.02), None)
    assert demo.resolve_read_latency(None, {demo.LATENCY_ENV_VAR: "5s"}) == (5.0, None)


@pytest.mark.parametrize("given", ["fast", "-1s", "10m", "1e3"])
def test_a_read_latency_that_is_not_a_duration_is_refused_with_the_forms_it_takes(given):
    seconds, problem = demo.resolve_read_latency(given, {})

    assert seconds == 0.0
    assert problem is not None and "300ms" in problem and repr(given) in problem


def test_a_computed_read_latency_is_refused():
    assert demo.resolve_read_latency(Unknown, {})[1] is not None


def test_a_provider_block_with_a_bad_read_latency_is_an_error_on_that_attribute(tmp_path):
    _, diags = configured(tmp_path, read_latency="soon")

    assert diags.has_errors()
    assert diags.diagnostics[0].path == ["read_latency"]


def test_the_default_provider_adds_no_wait_to_a_read(tmp_path):
    provider, diags = configured(tmp_path)

    assert not diags.has_errors(), str(diags)
    assert provider.read_latency == 0.0


def test_each_read_of_an_object_waits_at_least_the_read_latency(tmp_path):
    provider, diags = configured(tmp_path, read_latency="150ms")
    assert not diags.has_errors(), str(diags)
    planned = {"name": "web", "content": "v1", "tags": None, "secret": None, "id": Unknown}
    created = demo.DemoObject(provider).create(CreateContext(Diagnostics(), "demo_object"), planned)

    start = time.monotonic()
    for _ in range(2):
        read = demo.DemoObject(provider).read(ReadContext(Diagnostics(), "demo_object"), created)
    waited = time.monotonic() - start

    assert read == created  # the wait changes when the answer comes, never what it says
    assert waited >= 2 * 0.15  # a lower bound: what the latency guarantees, not a speed claim

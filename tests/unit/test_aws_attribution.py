"""Who caused the drift: CloudTrail events, through the real boto3 client, against a loopback
CloudTrail (tests/cloudtrailfake.py), attributed to the drifted resources of a plan."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config

from tests import cloudtrailfake
from tfops.aws.attribution import (
    ResourceAttribution,
    attribute,
    attribution_from_dict,
    identifiers,
    render_line,
)
from tfops.aws.trail import TokenBucket, TrailCache, TrailLookup, agent_kind

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LAST_IN_SYNC = NOW - timedelta(days=2)
ALICE = "arn:aws:iam::111111111111:user/alice"
TFOPS_ROLE = "arn:aws:iam::111111111111:role/tfops-apply"
TERRAFORM_AGENT = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.9.0 (+https://www.terraform.io) "
    "terraform-provider-aws/5.0.0 aws-sdk-go-v2/1.30"
)


class FakeClock:
    """Monotonic time that moves only when someone sleeps: the rate limit measured, not waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def client_for(fake):
    # One attempt: the token bucket is tfops' answer to throttling, not botocore's retries.
    return boto3.client(
        "cloudtrail",
        endpoint_url=fake.url,
        region_name="eu-west-1",
        aws_access_key_id="AKIATESTTESTTEST0001",
        aws_secret_access_key="not-a-real-secret",
        config=Config(retries={"total_max_attempts": 1}),
    )


def lookup_for(fake, clock, **options):
    return TrailLookup(
        client_for(fake),
        bucket=TokenBucket(options.pop("rate_per_second", 2.0), clock=clock, sleep=clock.sleep),
        cache=options.pop("cache", None) or TrailCache(60, clock=clock),
        now=lambda: NOW,
        **options,
    )


def drift(address, type_, **before):
    return {
        "address": address,
        "type": type_,
        "change": {"actions": ["update"], "before": before, "after": before},
    }


WEB_SG = drift(
    "aws_security_group.web",
    "aws_security_group",
    id="sg-0123456789abcdef0",
    name="web",
    arn="arn:aws:ec2:eu-west-1:111111111111:security-group/sg-0123456789abcdef0",
)


# --- identifiers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "before", "expected"),
    [
        ("aws_instance", {"id": "i-0abc", "arn": "arn:i-0abc", "ami": "ami-1"}, ["i-0abc", "arn:i-0abc"]),
        (
            "aws_s3_bucket",
            {"id": "logs", "bucket": "logs", "arn": "arn:aws:s3:::logs"},
            ["logs", "arn:aws:s3:::logs"],
        ),
        ("aws_iam_role", {"id": "ci", "name": "ci", "arn": "arn:role/ci"}, ["ci", "arn:role/ci"]),
        ("aws_ssm_parameter", {"name": "/prod/p", "arn": "arn:p", "value": "x"}, ["/prod/p", "arn:p"]),
        ("aws_thing", {"id": "thing-1", "tags": {"a": "b"}}, ["thing-1"]),
    ],
)
def test_a_drifted_resource_is_known_to_cloudtrail_by_the_identifiers_its_type_carries(
    type_, before, expected
):
    assert identifiers(drift(f"{type_}.x", type_, **before)) == expected


def test_a_security_group_is_looked_up_by_its_id_first():
    assert identifiers(WEB_SG) == ["sg-0123456789abcdef0", WEB_SG["change"]["before"]["arn"], "web"]


def test_a_resource_without_before_values_or_with_only_sensitive_ones_has_no_identifier():
    assert identifiers({"address": "aws_vpc.x", "type": "aws_vpc", "change": {"before": None}}) == []
    secret = drift("aws_ssm_parameter.p", "aws_ssm_parameter", name="/prod/p")
    secret["change"]["before_sensitive"] = {"name": True}
    assert identifiers(secret) == []


# --- attribution through the real client -------------------------------------------------------------


def test_a_security_group_opened_in_the_console_is_attributed_to_alice(trail, clock):
    trail.record(
        "sg-0123456789abcdef0", "DescribeSecurityGroups", ALICE, time=NOW - timedelta(hours=1), read_only=True
    )
    trail.record(
        "sg-0123456789abcdef0",
        "AuthorizeSecurityGroupIngress",
        ALICE,
        time=datetime(2026, 11, 28, 10, 42, tzinfo=UTC),
        user_agent="AWS Internal; console.ec2.amazonaws.com",
    )
    trail.record(
        "sg-0123456789abcdef0",
        "CreateTags",
        ALICE,
        time=NOW - timedelta(days=1),
        user_agent="aws-cli/2.15.0 Python/3.11",
    )
    trail.record(
        "sg-0123456789abcdef0", "CreateSecurityGroup", ALICE, time=NOW - timedelta(days=10)
    )  # before the window
    trail.record(
        "sg-0fffffffffffffff", "RevokeSecurityGroupIngress", ALICE, time=NOW - timedelta(hours=1)
    )  # another group

    result = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock))

    web = result["aws_security_group.web"]
    assert [e.event_name for e in web.events] == ["AuthorizeSecurityGroupIngress", "CreateTags"]
    latest = web.events[0]
    assert (latest.principal_arn, latest.agent, latest.source_ip, latest.by_tfops) == (
        ALICE,
        "console",
        "203.0.113.7",
        False,
    )
    assert web.events[1].agent == "cli"
    assert render_line(web) == (
        f"`aws_security_group.web`: changed by {ALICE} "
        "(AuthorizeSecurityGroupIngress, console, 2026-11-28 10:42 UTC)"
    )
    assert trail.requests[0].resource_name == "sg-0123456789abcdef0"
    assert trail.requests[0].start == LAST_IN_SYNC and trail.requests[0].end == NOW


def test_a_change_made_by_a_tfops_run_is_recognised_by_its_session_name(trail, clock):
    trail.record(
        "sg-0123456789abcdef0",
        "ModifySecurityGroupRules",
        TFOPS_ROLE,
        session="tfops-network-r42",
        time=NOW - timedelta(minutes=5),
        user_agent=TERRAFORM_AGENT,
    )

    web = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock))["aws_security_group.web"]

    event = web.events[0]
    assert event.by_tfops and event.session_name == "tfops-network-r42"
    assert event.role_arn == TFOPS_ROLE
    assert event.principal_arn == "arn:aws:sts::111111111111:assumed-role/tfops-apply/tfops-network-r42"
    assert event.agent == "terraform"
    assert "(tfops)" in render_line(web)


def test_nothing_found_says_since_when_it_looked(trail, clock):
    result = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock))

    web = result["aws_security_group.web"]
    assert web.events == ()
    assert web.unavailable == "no write events since 2026-11-26 12:00 UTC"
    assert (
        render_line(web)
        == "`aws_security_group.web`: attribution unavailable: no write events since 2026-11-26 12:00 UTC"
    )


def test_a_lookup_never_reaches_back_beyond_cloudtrails_90_days(trail, clock):
    attribute([WEB_SG], NOW - timedelta(days=400), lookup_for(trail, clock))
    attribute([drift("aws_vpc.main", "aws_vpc", id="vpc-1")], None, lookup_for(trail, clock))

    assert {r.start for r in trail.requests} == {NOW - timedelta(days=90)}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("ThrottlingException", "ThrottlingException: Rate exceeded"),
        (
            "AccessDeniedException",
            "AccessDeniedException: User is not authorized to perform cloudtrail:LookupEvents",
        ),
    ],
)
def test_throttling_and_access_denied_leave_the_drift_unattributed_without_failing(
    trail, clock, code, reason
):
    trail.fail_with(code, reason.split(": ", 1)[1])
    bucket = drift("aws_s3_bucket.logs", "aws_s3_bucket", bucket="logs-bucket")

    result = attribute([WEB_SG, bucket], LAST_IN_SYNC, lookup_for(trail, clock))

    assert result["aws_security_group.web"].unavailable == reason
    assert result["aws_s3_bucket.logs"].unavailable == reason
    assert (
        render_line(result["aws_s3_bucket.logs"])
        == f"`aws_s3_bucket.logs`: attribution unavailable: {reason}"
    )


def test_an_unreachable_endpoint_leaves_the_drift_unattributed(clock):
    server, fake = cloudtrailfake.start()
    server.shutdown()
    server.server_close()  # nobody listens on that port any more

    web = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(fake, clock))["aws_security_group.web"]

    assert web.unavailable is not None and web.unavailable.startswith("CloudTrail unreachable")


# --- the limit -------------------------------------------------------------------------------------


def test_lookups_keep_to_two_requests_a_second_even_from_several_threads(trail, clock):
    lookup = lookup_for(trail, clock, max_lookups=100)
    started = clock()

    threads = [threading.Thread(target=lookup.events, args=(f"sg-{n:04d}", LAST_IN_SYNC)) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert trail.request_count() == 9
    assert clock() - started >= (9 - 1) / 2.0


def test_a_run_stops_asking_at_its_bound_and_says_so(trail, clock):
    trail.record("i-3", "StopInstances", ALICE, time=NOW - timedelta(hours=1))
    instances = [drift(f"aws_instance.n{n}", "aws_instance", id=f"i-{n}") for n in range(5)]

    result = attribute(instances, LAST_IN_SYNC, lookup_for(trail, clock, max_lookups=3))

    assert trail.request_count() == 3
    assert result["aws_instance.n0"].unavailable == "no write events since 2026-11-26 12:00 UTC"
    assert result["aws_instance.n3"].unavailable == "lookup bound reached (3 per run)"
    assert result["aws_instance.n4"].unavailable == "lookup bound reached (3 per run)"


def test_a_second_attribution_of_the_same_resource_is_answered_from_the_cache(trail, clock):
    trail.record(
        "sg-0123456789abcdef0", "AuthorizeSecurityGroupIngress", ALICE, time=NOW - timedelta(hours=1)
    )
    cache = TrailCache(60, clock=clock)
    attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock, cache=cache))
    asked = trail.request_count()

    again = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock, cache=cache))

    assert trail.request_count() == asked == 1
    assert again["aws_security_group.web"].events[0].principal_arn == ALICE
    clock.sleep(61)  # past the cache's lifetime: CloudTrail is asked again
    attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock, cache=cache))
    assert trail.request_count() == 2


def test_paging_collects_write_events_behind_a_page_of_reads(trail, clock):
    for minute in range(4):
        trail.record(
            "sg-0123456789abcdef0",
            "DescribeSecurityGroups",
            ALICE,
            time=NOW - timedelta(minutes=minute + 1),
            read_only=True,
        )
    trail.record(
        "sg-0123456789abcdef0", "AuthorizeSecurityGroupIngress", ALICE, time=NOW - timedelta(hours=3)
    )
    trail.page_size = 4

    web = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock))["aws_security_group.web"]

    assert [e.event_name for e in web.events] == ["AuthorizeSecurityGroupIngress"]
    assert [r.next_token for r in trail.requests] == [None, "4"]


# --- forms -------------------------------------------------------------------------------------------


def test_an_attribution_survives_the_round_trip_through_json(trail, clock):
    trail.record(
        "sg-0123456789abcdef0", "AuthorizeSecurityGroupIngress", ALICE, time=NOW - timedelta(hours=1)
    )
    web = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock))["aws_security_group.web"]
    unavailable = ResourceAttribution("aws_vpc.main", unavailable="AccessDeniedException")

    for original in (web, unavailable):
        assert attribution_from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_the_user_agent_says_which_tool_made_the_call():
    assert agent_kind("signin.amazonaws.com") == "console"
    assert agent_kind("aws-cli/2.15.0 Python/3.11.6 Linux/6.1") == "cli"
    assert agent_kind("Boto3/1.34.0 md/Botocore#1.34.0 Python/3.12") == "sdk"
    assert agent_kind("Terraform/1.9.0 terraform-provider-aws/5.0.0 aws-sdk-go-v2/1.30") == "terraform"
    assert agent_kind("curl/8.0", from_console=True) == "console"
    assert agent_kind("curl/8.0") == "other"


def test_only_the_few_most_recent_write_events_are_kept(trail, clock):
    for hour in range(5):
        trail.record("sg-0123456789abcdef0", f"Change{hour}", ALICE, time=NOW - timedelta(hours=hour + 1))

    web = attribute([WEB_SG], LAST_IN_SYNC, lookup_for(trail, clock))["aws_security_group.web"]

    assert [e.event_name for e in web.events] == ["Change0", "Change1", "Change2"]

"""Reading ``Prefer: wait=N`` (RFC 7240): the seconds asked for, shortened to the most the
service grants, and anything malformed ignored rather than refused."""

import pytest
from django.test import RequestFactory

from staging.api.long_poll import may_wait, preferred_wait


def request_with(**headers):
    return RequestFactory().get("/", headers=headers)


@pytest.mark.parametrize(
    ("prefer", "seconds"),
    [
        ("wait=10", 10),
        ("respond-async, wait=5", 5),
        ("WAIT = 7", 7),
        ('wait="3"', 3),
        ("wait=3; foo=bar", 3),
        ("wait=600", 60),
        ("wait=2, wait=9", 2),
    ],
)
def test_it_reads_the_seconds_asked_for(prefer, seconds):
    assert preferred_wait(request_with(Prefer=prefer)) == seconds


@pytest.mark.parametrize(
    "prefer", ["", "respond-async", "wait", "wait=", "wait=soon", "wait=-1", "wait=1.5", "wait=0"]
)
def test_it_ignores_a_missing_or_malformed_wait(prefer):
    assert preferred_wait(request_with(Prefer=prefer)) is None


def test_a_request_waits_only_with_a_validator_to_wait_on():
    assert may_wait(request_with(Prefer="wait=5", **{"If-None-Match": 'W/"x"'}))
    assert not may_wait(request_with(Prefer="wait=5"))
    assert not may_wait(request_with(**{"If-None-Match": 'W/"x"'}))

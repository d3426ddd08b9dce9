"""The DTS's side of a staging request over real HTTP, as the integration tests play it: its
service account's header, the request, and the polling."""

import time

import requests

from staging.roles import Role
from staging.services.accounts import token_create


def dts_headers() -> dict:
    """The Authorization header of a new token for the DTS's service account."""
    return {"Authorization": f"Bearer {token_create(username='dts', role=Role.SERVICE_USER)}"}


def dts_stage(base: str, ids: list[str], headers: dict) -> tuple[str, str]:
    """Ask the service at ``base`` to stage the files ``ids``: (request id, its status URL)."""
    created = requests.post(f"{base}/dts/staging", json={"ids": ids}, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    return request_id, f"{base}/dts/staging?id={request_id}"


def poll(url: str, headers: dict, done, *, timeout: float = 90) -> dict:
    """GET ``url`` until ``done(body)``; returns that body. Every answer must be a 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        if done(response.json()):
            return response.json()
        time.sleep(0.2)
    raise TimeoutError(f"{url} not done after {timeout}s")


def poll_until_not_staging(url: str, headers: dict, *, timeout: float = 90) -> str:
    """Poll as the DTS does (faster): the first status that is not "staging"."""
    return poll(url, headers, lambda body: body["status"] != "staging", timeout=timeout)["status"]

"""The wire side of webhooks, without the database: Standard Webhooks signatures, the guard that
keeps a receiver's URL from pointing into our own network (SSRF), and one POST to an address
the guard checked.

Signatures (https://www.standardwebhooks.com): ``webhook-signature: v1,<base64 HMAC-SHA256>`` of
``{webhook-id}.{webhook-timestamp}.{body}`` keyed with the base64-decoded part of the
``whsec_…`` secret; several space-separated signatures while a rotated secret still counts.

The guard resolves the host and refuses it when ANY address it resolves to is loopback,
link-local, private, multicast, unspecified, reserved (not globally routable) or one of this
host's own, unless ``WEBHOOK_ALLOWED_NETWORKS`` holds it. The request then connects to the
address that was checked, not to a second lookup's answer, so a DNS answer that changes between
check and connect (rebinding) cannot slip through. Redirects are never followed.
"""

import base64
import hashlib
import hmac
import http.client
import ipaddress
import math
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from django.conf import settings

from staging.errors import ServiceError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
RESPONSE_PREFIX_BYTES = 256


def secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` under ``secret`` (``whsec_…``)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(secrets_in_force: list[str], webhook_id: str, timestamp: int, body: bytes):
    return " ".join(signature(s, webhook_id, timestamp, body) for s in secrets_in_force)


class UnsafeWebhookURL(ServiceError):
    """A receiver URL the service will not call (a 400 at registration)."""


def _allowed_networks() -> list:
    return [ipaddress.ip_network(n, strict=False) for n in settings.WEBHOOK_ALLOWED_NETWORKS]


# 192.0.0.0/24: Python calls most of it global; no webhook receiver lives there.
IETF_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")


@cache
def _own_addresses() -> frozenset:
    """This host's addresses as its name resolves (a receiver must not be the service itself)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return frozenset()
    return frozenset(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)


def _why_refused(address) -> str:
    """Why ``address`` may not be called, or "" when it may."""
    if any(address in network for network in _allowed_networks()):
        return ""
    # IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo's client) are judged by it.
    mapped = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if mapped is not None:
        return _why_refused(mapped)
    teredo = getattr(address, "teredo", None)
    if teredo is not None:
        return _why_refused(teredo[1])
    for reason in (
        "loopback",
        "link_local",
        "site_local",
        "private",
        "multicast",
        "unspecified",
        "reserved",
    ):
        if getattr(address, f"is_{reason}", False):
            return reason.replace("_", "-")
    if address in IETF_PROTOCOL_ASSIGNMENTS:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    if address in _own_addresses():
        return "this service's own"
    return ""


@dataclass(frozen=True)
class CheckedURL:
    """A receiver URL that passed the guard, with the address to connect to."""

    scheme: str
    host: str
    port: int
    target: str  # path and query
    address: str


def url_checked(url: str, *, field: str = "url") -> CheckedURL:
    """Parse ``url`` and resolve its host; UnsafeWebhookURL (400) naming the reason if it may not
    be called."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhookURL(
            f"{url!r} is not an http(s) URL with a host; give one such as "
            "https://example.org/hooks",
            field=field,
        )
    if parts.username or parts.password:
        raise UnsafeWebhookURL("a webhook URL must not carry a user name or password", field=field)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeWebhookURL(f"{url!r} has an invalid port", field=field) from exc
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeWebhookURL(
            f"the host {parts.hostname} of the webhook URL does not resolve ({exc})", field=field
        ) from exc
    addresses = list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))
    for text in addresses:
        reason = _why_refused(ipaddress.ip_address(text))
        if reason:
            raise UnsafeWebhookURL(
                f"the webhook URL's host {parts.hostname} resolves to {text}, a {reason} "
                "address, which this service does not call (an operator may allow a network "
                "with WEBHOOK_ALLOWED_NETWORKS)",
                field=field,
            )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CheckedURL(parts.scheme, parts.hostname, port, target, addresses[0])


def _deadline_passed() -> TimeoutError:
    return TimeoutError(
        f"no answer within the attempt's {settings.WEBHOOK_ATTEMPT_SECONDS:g} s "
        "(WEBHOOK_ATTEMPT_SECONDS)"
    )


class _DeadlineMixin:
    """A socket whose every send and receive waits at most the per-operation timeout and never
    past the attempt's deadline (time.monotonic()): a receiver that drips its answer a byte at
    a time, each within the read timeout, is still cut off when the attempt's time is up."""

    deadline = math.inf
    operation_timeout = math.inf

    def _timeout_set(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _deadline_passed()
        self.settimeout(min(self.operation_timeout, left))

    def recv_into(self, *args, **kwargs):
        self._timeout_set()
        return super().recv_into(*args, **kwargs)

    def recv(self, *args, **kwargs):
        self._timeout_set()
        return super().recv(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._timeout_set()
        return super().sendall(*args, **kwargs)


class _DeadlineSocket(_DeadlineMixin, socket.socket):
    pass


class _DeadlineSSLSocket(_DeadlineMixin, ssl.SSLSocket):
    pass


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; the Host header still names the host."""

    def __init__(self, checked: CheckedURL, *, deadline: float, **kwargs):
        super().__init__(checked.host, checked.port, **kwargs)
        self.address = checked.address
        self.deadline = deadline

    def connect(self):
        self.sock = _connected(self.address, self.port, self.deadline)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As _PinnedHTTPConnection, with TLS verified against the host's name."""

    def __init__(self, checked: CheckedURL, *, deadline: float, **kwargs):
        context = ssl.create_default_context()
        context.sslsocket_class = _DeadlineSSLSocket
        super().__init__(checked.host, checked.port, context=context, **kwargs)
        self.address = checked.address
        self.deadline = deadline

    def connect(self):
        # The handshake runs under the socket's timeout, capped by the time left.
        sock = self._context.wrap_socket(
            _connected(self.address, self.port, self.deadline), server_hostname=self.host
        )
        sock.deadline = self.deadline
        sock.operation_timeout = settings.WEBHOOK_READ_TIMEOUT
        self.sock = sock


def _connected(address: str, port: int, deadline: float) -> socket.socket:
    """A socket connected to ``address`` within WEBHOOK_CONNECT_TIMEOUT and the deadline."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = _DeadlineSocket(family, socket.SOCK_STREAM)
    try:
        sock.deadline = deadline
        sock.operation_timeout = settings.WEBHOOK_CONNECT_TIMEOUT
        sock._timeout_set()
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    sock.operation_timeout = settings.WEBHOOK_READ_TIMEOUT
    sock._timeout_set()
    return sock


@dataclass
class PostOutcome:
    status_code: int | None
    duration_ms: int
    error: str = ""
    response_prefix: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
    """POST ``body`` once to ``url`` (checked again now: DNS may have changed since it was
    registered). Never raises for what the receiver or the network does; no redirect followed,
    at most RESPONSE_PREFIX_BYTES of the answer read, and all of it (connecting, sending,
    reading) over within WEBHOOK_ATTEMPT_SECONDS: a slow receiver cannot hold a sender longer."""
    started = time.monotonic()
    deadline = started + settings.WEBHOOK_ATTEMPT_SECONDS

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        checked = url_checked(url)
    except UnsafeWebhookURL as exc:
        return PostOutcome(None, elapsed(), error=f"refused: {exc.detail}"[:500])
    kind = _PinnedHTTPSConnection if checked.scheme == "https" else _PinnedHTTPConnection
    connection = kind(checked, deadline=deadline)
    try:
        connection.request(
            "POST",
            checked.target,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "stagingsvc-webhooks",
                **headers,
            },
        )
        response = connection.getresponse()
        prefix = response.read(RESPONSE_PREFIX_BYTES).decode("utf-8", errors="replace")
        return PostOutcome(response.status, elapsed(), response_prefix=prefix[:256])
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, TimeoutError) and time.monotonic() >= deadline:
            exc = _deadline_passed()  # name the bound that ended the attempt, not the socket's
        return PostOutcome(None, elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.close()

"""RabbitMQ's management HTTP API, read-only: the age of the message at the head of each queue.

AMQP cannot tell a queue's oldest message's age; the management plugin reports
`head_message_timestamp`, copied from that message's AMQP `timestamp` property (the hub sets
it on every publish; a message without one, or a broker that does not report it for a queue
type, leaves the queue out: RabbitMQ reports it for classic queues only, none of the hub's own,
which hub.operations.queue_ages bounds instead). Plain urllib with an explicit timeout; errors
become TransientError. An https:// management URL is verified against the system's CA store plus
amqp.tls.ca_file, and is shown amqp.tls's client certificate when the listener asks for one.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Collection
from urllib.parse import quote, unquote, urlsplit

from hub.errors import TransientError
from hub.settings.broker_tls import AmqpTls


def _vhost_and_auth(amqp_url: str) -> tuple[str, str]:
    parts = urlsplit(amqp_url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) or "/"
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return vhost, f"Basic {token}"


def head_message_ages(
    management_url: str,
    amqp_url: str,
    queues: Collection[str],
    *,
    now: float,
    timeout: float = 5.0,
    tls: AmqpTls | None = None,
) -> dict[str, float]:
    """Seconds since the head message of each queue in `queues` was published (`now` is a
    Unix time). The hub's vhost and credentials come from its AMQP URL: one request for all."""
    vhost, authorization = _vhost_and_auth(amqp_url)
    url = (
        f"{management_url.rstrip('/')}/api/queues/{quote(vhost, safe='')}"
        "?columns=name,head_message_timestamp"
    )
    request = urllib.request.Request(url, headers={"Authorization": authorization})
    context = https_context(tls) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            rows = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TransientError(f"RabbitMQ management API unavailable ({exc})") from exc
    ages: dict[str, float] = {}
    for row in rows if isinstance(rows, list) else []:
        name, stamp = row.get("name"), row.get("head_message_timestamp")
        if name in queues and isinstance(stamp, int | float) and not isinstance(stamp, bool):
            ages[name] = max(0.0, now - float(stamp))
    return ages


def https_context(tls: AmqpTls | None) -> ssl.SSLContext:
    """Verifies the management listener (chain and host name, TLS 1.2+) against the system's
    CA store and the broker's own CA; presents the hub's client certificate, if it has one."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and tls.ca_file:
        context.load_verify_locations(cafile=tls.ca_file)
    if tls is not None and tls.client_cert:
        context.load_cert_chain(*tls.client_cert)
    return context

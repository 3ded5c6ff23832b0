"""TLS to RabbitMQ by configuration: `amqp.tls` in hub.yaml and HUB_AMQP_* overrides, checked
by hub.settings into one frozen AmqpTls; the connections themselves are made in
hub.adapters.rabbitmq. Reads nothing itself: the environment arrives as a mapping.

    amqp:
      url: amqps://broker.example.nhs.uk:5671/ld-hub   # TLS needs amqps://
      tls:
        ca_file: /etc/hub/tls/ca.pem        # HUB_AMQP_CA_FILE; none: the system's CA store
        cert_file: /etc/hub/tls/hub.pem     # HUB_AMQP_CERT_FILE  } the hub's client certificate,
        key_file: /etc/hub/tls/hub.key      # HUB_AMQP_KEY_FILE   } both or neither
        server_hostname: broker.internal    # HUB_AMQP_SERVER_HOSTNAME; none: the URL's host

The broker's certificate is always verified (chain and host name); there is no switch to turn
that off. Files are checked at start-up: present, readable, PEM, the key matching its
certificate and not encrypted (the AMQP client cannot be given a key password: protect the
key with file permissions, as RabbitMQ does its own).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TEXT = {"type": "string", "minLength": 1}
_HOST = {"type": "string", "pattern": r"^[A-Za-z0-9.:\[\]-]+$", "x-hint": "a host name"}

TLS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [],
    "properties": {
        "ca_file": _TEXT,
        "cert_file": _TEXT,
        "key_file": _TEXT,
        "server_hostname": _HOST,
    },
}
# Each amqp.tls key and the environment variable that overrides it.
ENV_NAMES = {
    "ca_file": "HUB_AMQP_CA_FILE",
    "cert_file": "HUB_AMQP_CERT_FILE",
    "key_file": "HUB_AMQP_KEY_FILE",
    "server_hostname": "HUB_AMQP_SERVER_HOSTNAME",
}


@dataclass(frozen=True, slots=True)
class AmqpTls:
    """How the hub's amqps:// connections verify the broker and prove who the hub is."""

    ca_file: str | None = None  # None: verify against the system's CA store
    cert_file: str | None = None  # the hub's client certificate (PEM), with key_file
    key_file: str | None = None
    server_hostname: str | None = None  # the name the broker's certificate must carry

    @property
    def client_cert(self) -> tuple[str, str] | None:
        return (self.cert_file, self.key_file) if self.cert_file and self.key_file else None


class _EncryptedKey(Exception):
    """Raised from the password callback: the key needs a password the hub cannot give."""


def _no_password() -> str:
    raise _EncryptedKey


def amqp_tls(
    raw_amqp: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    url: str,
    url_from_env: bool,
    locate: Callable[[tuple[str, ...]], str],
) -> tuple[AmqpTls | None, list[str]]:
    """The TLS options from `amqp.tls` (`raw_amqp` is hub.yaml's `amqp:` mapping) and the
    environment, which wins key by key; with the problems found, each saying where it was set.
    `url` is the AMQP URL in force (never quoted: it may carry a password)."""
    raw = raw_amqp.get("tls")
    from_file = dict(raw) if isinstance(raw, Mapping) else {}
    values: dict[str, str] = {}
    where: dict[str, str] = {}
    for key, var in ENV_NAMES.items():
        if env.get(var):
            values[key], where[key] = env[var], f"environment {var}"
        elif isinstance(from_file.get(key), str):
            values[key] = from_file[key]
            where[key] = f"{locate(('amqp', 'tls', key))}: amqp.tls.{key}"
    if not values and not isinstance(raw, Mapping):
        return None, []
    problems: list[str] = []
    if not url.startswith("amqps://"):
        if isinstance(raw, Mapping):
            place = f"{locate(('amqp', 'tls'))}: amqp.tls"
        else:
            place = where[next(iter(values))]
        source = "HUB_AMQP_URL" if url_from_env else "amqp.url"
        problems.append(
            f"{place}: TLS options need an amqps:// URL, but {source} is not one "
            "(the broker's TLS listener is usually on port 5671)"
        )
    if ("cert_file" in values) != ("key_file" in values):
        have = "cert_file" if "cert_file" in values else "key_file"
        missing = "key_file" if have == "cert_file" else "cert_file"
        problems.append(
            f"{where[have]}: a client certificate needs both cert_file and key_file "
            f"(set {missing} or {ENV_NAMES[missing]})"
        )
    readable = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in values:
            problem = _file_problem(values[key])
            if problem:
                problems.append(f"{where[key]}: {problem}")
            readable[key] = problem is None
    if readable.get("ca_file"):
        problems += [f"{where['ca_file']}: {p}" for p in _ca_problems(values["ca_file"])]
    if readable.get("cert_file") and readable.get("key_file"):
        pair = _pair_problems(values["cert_file"], values["key_file"])
        problems += [f"{where['cert_file']}: {p}" for p in pair]
    return AmqpTls(**values), problems


def _file_problem(path: str) -> str | None:
    file = Path(path)
    if not file.is_file():
        return f"no such file: {path}"
    if not os.access(file, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def _ca_problems(ca_file: str) -> list[str]:
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return [f"{ca_file} is not a PEM CA certificate bundle ({_reason(exc)})"]
    return []


def _pair_problems(cert_file: str, key_file: str) -> list[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except _EncryptedKey:
        return [
            f"the key {key_file} is encrypted; the hub needs an unencrypted key "
            "(protect it with file permissions, e.g. chmod 600)"
        ]
    except (ssl.SSLError, OSError, ValueError) as exc:
        return [
            f"{cert_file} and {key_file} are not a PEM certificate and its matching key "
            f"({_reason(exc)})"
        ]
    return []


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc)

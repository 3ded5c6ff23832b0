"""Test certificates, made with the openssl command in a directory of the test's own: a CA, a
server certificate for localhost and 127.0.0.1, a client certificate, and for the refusals a
second CA nobody trusts with a client certificate of its own, and an encrypted key.

    ca.pem ca.key                 the test CA
    server.pem server.key         CN=server, SAN localhost and 127.0.0.1, signed by the test CA
    client.pem client.key         CN=client, signed by the test CA
    rogue-ca.pem                  a CA nobody trusts
    rogue-client.pem/.key         CN=rogue, signed by the rogue CA
    client-encrypted.key          client.key encrypted with the pass phrase ENCRYPTED_KEY_PASSWORD
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ENCRYPTED_KEY_PASSWORD = "test-pass-phrase"
_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # quick to make


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(d: Path, name: str, subject: str) -> None:
    openssl("req", "-x509", *_KEY, "-days", "2", "-subj", f"/CN={subject}",
            "-keyout", d / f"{name}.key", "-out", d / f"{name}.pem")  # fmt: skip


def _signed(d: Path, name: str, ca: str, *, extensions: str | None = None) -> None:
    openssl("req", *_KEY, "-subj", f"/CN={name.removeprefix('rogue-')}",
            "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr")  # fmt: skip
    ext: list[str | Path] = []
    if extensions:
        (d / f"{name}.ext").write_text(extensions)
        ext = ["-extfile", d / f"{name}.ext"]
    openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.pem",
            "-CAkey", d / f"{ca}.key", "-CAcreateserial", "-days", "2",
            "-out", d / f"{name}.pem", *ext)  # fmt: skip


def make_pki(d: Path) -> Path:
    """Every file listed in the module docstring, in `d`; returns `d`."""
    _ca(d, "ca", "test CA")
    _signed(d, "server", "ca", extensions="subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _signed(d, "client", "ca")
    _ca(d, "rogue-ca", "rogue CA")
    _signed(d, "rogue-client", "rogue-ca")
    openssl("pkey", "-in", d / "client.key", "-aes256", "-passout",
            f"pass:{ENCRYPTED_KEY_PASSWORD}", "-out", d / "client-encrypted.key")  # fmt: skip
    return d

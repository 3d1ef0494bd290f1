"""TLS for the local NATS (`igny8 up` with `IGNY8_NATS_TLS=1`, and tests): a throw-away
CA made at start, a server certificate it signs for loopback, and the `tls` block that
makes nats-server require TLS from every client (ADR 0026).

The CA's private key is never written: the CA certificate (`ca.pem`, what clients verify
against, `IGNY8_NATS_TLS_CA`) and the server's key and certificate are, in a directory of
the owner's only. A new start makes a new CA. Needs `cryptography` (installed with the
platform: constraints.txt); `available()` says whether it is.

Kubernetes does not use this: its certificates come from the Secrets named in
deploy/k8s/nats/values.yaml (deploy/k8s/README.md).
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


def available() -> bool:
    return importlib.util.find_spec("cryptography") is not None


@dataclass(frozen=True)
class LocalTls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_block(self) -> str:
        """nats-server configuration: clients must speak TLS (a plaintext CONNECT is
        refused); client certificates are not asked for (users authenticate with their
        passwords, libs/common/natsauth.py)."""
        return ("tls {\n"
                f"  cert_file: {json.dumps(str(self.cert_file))}\n"
                f"  key_file: {json.dumps(str(self.key_file))}\n"
                "  timeout: 5\n"
                "}\n")


def _write(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def make_local_tls(directory: Path, *, days: int = 30) -> LocalTls:
    """A new CA and a server certificate for 127.0.0.1, ::1 and localhost, in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    lifetime = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "igny8 local NATS CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0]).not_valid_after(lifetime[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in LOOPBACK_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in LOOPBACK_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "igny8 NATS")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0]).not_valid_after(lifetime[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))

    tls = LocalTls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    _write(tls.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(tls.cert_file, cert.public_bytes(serialization.Encoding.PEM))
    _write(tls.key_file, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return tls

"""TLS for an endpoint of the fake: a throwaway certificate for 127.0.0.1, and where a
client finds it among the system's CAs: a CA file (``SSL_CERT_FILE``: the system's
bundle plus that certificate) and a hashed CA folder (``SSL_CERT_DIR``: the system's
``/etc/ssl/certs`` entries plus that certificate under its subject hash), so a client
has as many CAs to load as on Google's machines.

For benchmarks that must pay what a job pays on its way to ``https://storage.googleapis.com``
(the ssl module, a default context with the system's CAs, a TLS session per connection).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
from pathlib import Path


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path, Path]:
    """``(server context, CA file, hashed CA folder)`` for clients, under ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fakegcp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    system = ssl.get_default_verify_paths().cafile
    bundle = folder / "ca-bundle.pem"
    bundle.write_bytes((Path(system).read_bytes() if system else b"") + cert_pem)
    hashed = folder / "certs"
    hashed.mkdir(exist_ok=True)
    system_dir = ssl.get_default_verify_paths().capath
    if system_dir:
        for entry in os.scandir(system_dir):
            (hashed / entry.name).symlink_to(os.path.realpath(entry.path))
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(folder / "cert.pem")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (hashed / f"{subject_hash}.0").write_bytes(cert_pem)
    return server, bundle, hashed

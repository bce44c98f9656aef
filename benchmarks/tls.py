"""Certificates for loopback TLS servers, made with the ``openssl`` command line tool.

A throw-away certificate authority signs a server certificate for ``127.0.0.1`` and
``localhost``. Clients trust the authority through a CA bundle (``ETPAY["CA_BUNDLE"]``, or
``verify=`` for plain requests): certificate verification stays on everywhere. The extensions
are those Python 3.13's strict verification asks for.

    python -m benchmarks.tls DIRECTORY [--days N] [--key ec|rsa]

writes ``ca.pem``, ``server.pem`` and ``server.key`` into ``DIRECTORY``.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """An ``SSLContext`` for a server presenting the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def _key_options(key: str) -> list[str]:
    if key == "rsa":
        return ["-newkey", "rsa:2048"]
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


def make_certificates(directory: Path, *, days: int = 2, key: str = "ec") -> Certificates:
    """Create a CA and a server certificate signed by it in ``directory``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit(
            "The openssl command is needed to make a certificate (apt-get install openssl)."
        )
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, cert_key, csr = (
        directory / "server.pem",
        directory / "server.key",
        directory / "server.csr",
    )
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid:always\n"
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run(
        "req", "-x509", *_key_options(key), "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", str(days), "-subj", "/CN=django-etpay loopback CA",
        "-addext", "basicConstraints = critical, CA:TRUE",
        "-addext", "keyUsage = critical, keyCertSign, cRLSign",
        "-addext", "subjectKeyIdentifier = hash",
    )  # fmt: skip
    run(
        "req", *_key_options(key), "-nodes", "-keyout", str(cert_key), "-out", str(csr),
        "-subj", "/CN=localhost",
    )  # fmt: skip
    run(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", str(days), "-extfile", str(extensions),
    )  # fmt: skip
    for leftover in (csr, extensions, ca_key, directory / "ca.srl"):
        leftover.unlink(missing_ok=True)
    return Certificates(ca=ca, cert=cert, key=cert_key)


def temporary_certificates(
    key: str = "ec",
) -> tuple[tempfile.TemporaryDirectory[str], Certificates]:
    """Certificates in a new temporary directory (delete it with ``.cleanup()``)."""
    holder = tempfile.TemporaryDirectory(prefix="etpay-tls-")
    return holder, make_certificates(Path(holder.name), key=key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--key", choices=["ec", "rsa"], default="ec")
    args = parser.parse_args()
    certificates = make_certificates(args.directory, days=args.days, key=args.key)
    print(f"CA bundle {certificates.ca}; server certificate {certificates.cert}")


if __name__ == "__main__":
    main()

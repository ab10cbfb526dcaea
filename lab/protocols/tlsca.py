"""Each lab's own certificate authority, the servers' certificates, and the nodes' trust.

At lab build (before the nodes' /etc layers are mounted) ``prepare_lab_tls`` makes a CA
for the lab and keeps its key in the lab's state directory, which no node can see. Every
node trusts that CA and nothing else: its ``/etc/ssl/certs/ca-certificates.crt`` (the file
OpenSSL, swaks and the lab's own SMTP client read by default) holds the lab CA only, since
nothing outside the lab is reachable anyway. Each node that offers STARTTLS (a mail server,
the firewall's SMTP proxy) gets a certificate for its names in its own
``/etc/ssl/certs/<name>.pem`` and key in ``/etc/ssl/private/<name>.key`` (mode 0600), as a
Debian server keeps them; a trainee can read them with ``openssl x509``.

``ServerTls`` is what a service holds: the files, a server context for STARTTLS, and
``reissue()``, with which faults give a server an expired or misnamed certificate.
"""
from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_NAME = "maillab {lab} CA"
VALIDITY = dt.timedelta(days=825)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write in place (same inode): the file may already be visible through a node's
    overlay, which would keep showing a replaced inode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


class LabCa:
    """The CA of one lab: created once in ``directory`` (mode 0700), then reloaded."""

    def __init__(self, directory: Path, lab: str = "lab") -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            self.key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            self.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            return
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = _name(CA_NAME.format(lab=lab))
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + 2 * VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        _write(key_path, _pem_key(self.key), 0o600)
        _write(cert_path, self.cert_pem, 0o644)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: list[str], *, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> tuple[bytes, bytes]:
        """A server certificate for ``names`` (the first is the subject): (cert, key) PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start = not_before or now - dt.timedelta(hours=1)
        cert = (
            x509.CertificateBuilder().subject_name(_name(names[0]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(not_after or now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@dataclass
class ServerTls:
    """One server's certificate as its node holds it (host paths under the node root)."""

    ca: LabCa
    names: list[str]
    cert_file: Path
    key_file: Path
    trust_file: Path

    @classmethod
    def for_node(cls, ca: LabCa, root: Path, names: list[str]) -> ServerTls:
        main = names[0]
        return cls(ca, list(names), root / f"etc/ssl/certs/{main}.pem",
                   root / f"etc/ssl/private/{main}.key", root / TRUST_BUNDLE.lstrip("/"))

    def reissue(self, names: list[str] | None = None, *, not_before: dt.datetime | None = None,
                not_after: dt.datetime | None = None) -> None:
        """Replace the certificate (same file names), e.g. expired or for other names."""
        cert, key = self.ca.issue(names or self.names, not_before=not_before,
                                  not_after=not_after)
        _write(self.key_file, key, 0o600)
        _write(self.cert_file, cert, 0o644)

    def ensure(self) -> None:
        if not (self.cert_file.exists() and self.key_file.exists()):
            self.reissue()

    def issued(self) -> tuple[bytes, bytes]:
        """The certificate and key files as they are now (to put back with ``restore``)."""
        return self.cert_file.read_bytes(), self.key_file.read_bytes()

    def restore(self, files: tuple[bytes, bytes]) -> None:
        cert, key = files
        _write(self.key_file, key, 0o600)
        _write(self.cert_file, cert, 0o644)

    def server_context(self) -> ssl.SSLContext:
        """A fresh context from the files as they are now (a server reloads on start)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return client_context(self.trust_file)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_file.read_bytes())


def client_context(trust_file: Path) -> ssl.SSLContext:
    """An SMTP client's context: it trusts the node's bundle but, as Postfix at security
    levels may and encrypt, does not refuse an unverified peer; the caller reads the
    verification result (``peer_trust``) to log it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if trust_file.exists():
        context.load_verify_locations(trust_file)
    return context


def install_trust(root: Path, ca: LabCa) -> None:
    """Make a node trust the lab's CA (and only it)."""
    _write(root / TRUST_BUNDLE.lstrip("/"), ca.cert_pem, 0o644)


def peer_trust(ssl_object: ssl.SSLObject | None, trust_file: Path, hostname: str) -> str:
    """How Postfix's SMTP client would call the server's certificate: ``Verified`` (it
    chains to a trusted CA, is current and names ``hostname``), ``Trusted`` (chains and is
    current, other name), ``Untrusted`` (anything else)."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return "Anonymous"
    cert = x509.load_der_x509_certificate(der)
    try:
        anchors = _load_pems(trust_file.read_bytes())
    except (OSError, ValueError):
        return "Untrusted"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if not cert.not_valid_before <= now <= cert.not_valid_after:
        return "Untrusted"
    if not any(_signed_by(cert, ca) for ca in anchors):
        return "Untrusted"
    return "Verified" if hostname.lower().rstrip(".") in cert_names(cert) else "Trusted"


def _load_pems(data: bytes) -> list[x509.Certificate]:
    marker = b"-----END CERTIFICATE-----"
    return [x509.load_pem_x509_certificate(block + marker)
            for block in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]


def cert_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    key = ca.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except Exception:  # noqa: BLE001 - cryptography's InvalidSignature and friends
        return False
    return True


def prepare_lab_tls(directory: Path, lab: str, roots: dict[str, Path],
                    names: dict[str, list[str]]) -> LabCa:
    """At lab build: the lab's CA in ``directory``, every node's trust in its root, and a
    certificate for each node in ``names`` (node -> its server names)."""
    ca = LabCa(directory, lab)
    for node, root in roots.items():
        install_trust(root, ca)
        if names.get(node):
            ServerTls.for_node(ca, root, names[node]).ensure()
    return ca

"""A run's OpenFlow PKI: a CA, the SDN controller's certificate and the switches' certificate.

Used when the controller is reached over TCP from other machines: os-ken accepts only
connections that present the switch certificate signed by the run's CA (mutual TLS),
and the machines' relays accept only a controller presenting the controller certificate.
Everything is PEM text (JSON-able, handed to the actors that need it); `write` puts it
in a 0700 directory as 0600 files for os-ken and `ssl`.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 30


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
          ca: bool = False, usage: ExtendedKeyUsageOID | None = None, ip: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    return b.sign(signer, hashes.SHA256())


def make_pki(prefix: str, controller_ip: str) -> dict[str, str]:
    """PEMs: `ca`, `controller_cert`/`controller_key` (for `controller_ip`), `switch_cert`/`switch_key`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{prefix} OpenFlow CA")
    ca = _cert(f"{prefix} OpenFlow CA", ca_key, ca_name, ca_key, ca=True)
    out = {"ca": ca.public_bytes(serialization.Encoding.PEM).decode()}
    for role, usage, ip in (("controller", ExtendedKeyUsageOID.SERVER_AUTH, controller_ip),
                            ("switch", ExtendedKeyUsageOID.CLIENT_AUTH, None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"{prefix} {role}", key, ca_name, ca_key, usage=usage, ip=ip)
        out[f"{role}_cert"] = cert.public_bytes(serialization.Encoding.PEM).decode()
        out[f"{role}_key"] = _key_pem(key)
    return out


def write(pki: dict[str, str], folder: str, role: str) -> dict[str, str]:
    """Files `ca.pem`, `ROLE-cert.pem`, `ROLE-key.pem` (0600, in a 0700 folder); their paths."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    paths = {}
    for kind, pem in (("ca", pki["ca"]), ("cert", pki[f"{role}_cert"]), ("key", pki[f"{role}_key"])):
        path = os.path.join(folder, "ca.pem" if kind == "ca" else f"{role}-{kind}.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        paths[kind] = path
    return paths


def client_context(files: dict[str, str]) -> ssl.SSLContext:
    """A switch-side TLS context: presents the switch certificate, trusts only the run's CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files["cert"], files["key"])
    ctx.load_verify_locations(files["ca"])
    return ctx

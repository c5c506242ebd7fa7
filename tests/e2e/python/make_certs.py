"""Writes test certificates into DIR (argv[1]) with the `cryptography` package: a CA
(ca.pem), a server certificate for localhost/127.0.0.1 (server.pem, server-key.pem), the
same names already expired (expired.pem, expired-key.pem), one for another name only
(wrongname.pem, wrongname-key.pem), and a second, untrusted CA (other-ca.pem)."""
import datetime
import ipaddress
import pathlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

out = pathlib.Path(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write(stem, cert, k):
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if k is not None:
        (out / f"{stem}-key.pem").write_bytes(
            k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def ca(cn):
    k = key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(k, hashes.SHA256())
    )
    return cert, k


def leaf(ca_cert, ca_key, sans, start, end):
    k = key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(sans[0]))
        .issuer_name(ca_cert.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(s)) if s[0].isdigit() else x509.DNSName(s) for s in sans]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, k


ca_cert, ca_key = ca("cacheplane test CA")
write("ca", ca_cert, None)
other_cert, _ = ca("another CA")
write("other-ca", other_cert, None)
names = ["localhost", "127.0.0.1"]
write("server", *leaf(ca_cert, ca_key, names, now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)))
write("expired", *leaf(ca_cert, ca_key, names, now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)))
write("wrongname", *leaf(ca_cert, ca_key, ["cache.example.com"], now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)))
print("certs ok")

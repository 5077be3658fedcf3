"""Throwaway certificates for the TLS tests: a CA, a server certificate and client certificates it signs."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder, stem: str, cert, key):
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def _certificate(subject: str, key, issuer_name, issuer_key, ca: bool, server: bool):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def self_signed(folder):
    """(cert, key) paths of a self-signed server certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _write(folder, "server", _certificate("localhost", key, _name("localhost"), key, True, True), key)


def ca_with_server_and_client(folder):
    """{'ca', 'server_cert', 'server_key', 'client_cert', 'client_key'}: paths, both leaves signed by the CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("lamina test CA", ca_key, _name("lamina test CA"), ca_key, True, False)
    ca_path, _ = _write(folder, "ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _write(folder, "server", _certificate("localhost", server_key, ca.subject, ca_key, False, True),
                    server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _write(folder, "client", _certificate("a client", client_key, ca.subject, ca_key, False, False),
                    client_key)
    return {"ca": ca_path, "server_cert": server[0], "server_key": server[1], "client_cert": client[0],
            "client_key": client[1]}

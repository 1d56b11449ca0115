"""The hub's local certificate authority, for MQTT and HTTP over TLS on the restaurant LAN
(hub --tls). No public CA can vouch for a Raspberry Pi at 192.168.1.10, so the hub makes
its own at provisioning: a CA whose certificate every device gets in its config, and a
server certificate for the hub's addresses, signed by it. Keys are ECDSA P-256 (small and
fast on an ESP32); the CA key never leaves <data-dir>/tls (0600).

    python -m hub.certs --data-dir data --host 192.168.1.10 --host hub.local

The server certificate is made again when the hub's addresses change; the CA stays.
"""
import argparse
import datetime
import ipaddress
import logging
import os
import pathlib
import socket
import ssl
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

TLS_DIR = "tls"
CA_DAYS = 3650
SERVER_DAYS = 825
FILES = {"ca": "ca.pem", "ca_key": "ca.key", "cert": "hub.pem", "key": "hub.key"}


def lan_hosts():
    """This machine's names and addresses as the LAN sees them (nothing is sent)."""
    hosts = ["127.0.0.1", "localhost", socket.gethostname()]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # picks the LAN interface; a UDP connect sends no packet
            hosts.append(s.getsockname()[0])
        except OSError:
            pass
    return hosts


def _name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _sans(hosts):
    names = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data, mode):
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Certs:
    """The CA and server certificate of one hub, in <data-dir>/tls/."""

    def __init__(self, data_dir):
        self.dir = pathlib.Path(data_dir) / TLS_DIR

    def path(self, name):
        return self.dir / FILES[name]

    def ca_pem(self):
        return self.path("ca").read_text(encoding="ascii")

    def files(self):
        """The CA, certificate and key files, as Mosquitto's listener options name them."""
        return {"cafile": self.path("ca"), "certfile": self.path("cert"), "keyfile": self.path("key")}

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.path("cert"), self.path("key"))
        return ctx

    def ensure(self, hosts, site="demo"):
        """Make the CA if there is none, and a server certificate covering `hosts` if the
        current one does not (or expires within 30 days). Returns the hosts it covers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        if not self.path("ca").exists() or not self.path("ca_key").exists():
            self._make_ca(site, now)
        current = self._covers()
        cert = x509.load_pem_x509_certificate(self.path("cert").read_bytes()) if current is not None else None
        if cert is None or not set(hosts) <= current or cert.not_valid_after_utc - now < datetime.timedelta(30):
            hosts = list(dict.fromkeys(list(hosts) + sorted(current or ())))  # keep what it covered
            self._make_server(hosts, now)
            log.info("TLS server certificate for %s written to %s", ", ".join(hosts), self.path("cert"))
        return sorted(self._covers())

    def _covers(self):
        try:
            cert = x509.load_pem_x509_certificate(self.path("cert").read_bytes())
            self.path("key").stat()
        except (OSError, ValueError):
            return None
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))

    def _make_ca(self, site, now):
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("rfm hub CA (%s)" % site)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write(self.path("ca_key"), _key_pem(key), 0o600)
        _write(self.path("ca"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("TLS: new local CA in %s", self.path("ca"))

    def _make_server(self, hosts, now):
        ca_key = serialization.load_pem_private_key(self.path("ca_key").read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.path("ca").read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
                .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write(self.path("key"), _key_pem(key), 0o600)
        _write(self.path("cert"), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hub.certs", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("data"),
                    help="the hub's data directory (default ./data); files go to <data-dir>/tls")
    ap.add_argument("--host", action="append", default=[],
                    help="an address or name devices use to reach the hub; repeat (default: this machine's "
                         "LAN address and names, and 127.0.0.1)")
    ap.add_argument("--site", default="demo", help="site id, named in the CA (default demo)")
    a = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    certs = Certs(a.data_dir)
    covered = certs.ensure(a.host or lan_hosts(), a.site)
    print("CA %s (give it to devices and browsers); server certificate %s for %s"
          % (certs.path("ca"), certs.path("cert"), ", ".join(covered)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

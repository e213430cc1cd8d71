"""LDAP sign-in (authenticator = "ldapauthenticator.LDAPAuthenticator", as the README shows)
against a real slapd: a throwaway directory with people and an allowed group, reached over
StartTLS with a certificate the hub checks, and a real hub signing users in through its
login form."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import ldap3
import pytest
import requests

from tests.platform import PORT_TAKEN, free_port, running_hub

pytestmark = pytest.mark.integration

BASE = "dc=workbench,dc=test"
PEOPLE = f"ou=people,{BASE}"
GROUP = f"cn=workbench,ou=groups,{BASE}"
MEMBER, OUTSIDER, UNKNOWN = "ldapada", "ldapotto", "ldapnobody"
PASSWORDS = {MEMBER: "ada-" + secrets.token_hex(6), OUTSIDER: "otto-" + secrets.token_hex(6)}
REFUSED = "Invalid username or password"


def slapd_binary() -> str:
    """slapd's path; the test fails (make test-system installs it) when it is missing."""
    found = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("slapd is not installed: `make test-system` installs it (Debian's slapd)")
    return found


def ssha(password: str) -> str:
    """An LDAP {SSHA} userPassword value."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def directory_entries() -> str:
    """The directory: people, one of them in the allowed group, the other not."""
    people = "".join(
        f"""
dn: uid={uid},{PEOPLE}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {ssha(password)}
"""
        for uid, password in PASSWORDS.items()
    )
    return f"""dn: {BASE}
objectClass: dcObject
objectClass: organization
o: workbench test
dc: workbench

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE}
objectClass: organizationalUnit
ou: groups
{people}
dn: {GROUP}
objectClass: groupOfNames
cn: workbench
member: uid={MEMBER},{PEOPLE}
"""


class Directory:
    """A throwaway slapd on a free loopback port, its config, data and log in folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.slapd = slapd_binary()
        self.cert, key = write_certificate(folder)
        (folder / "db").mkdir()
        self.conf = folder / "slapd.conf"
        # the schemas of Debian's own slapd set-up (the authenticator's default group filter
        # names nis's memberUid); binds and searches need TLS (StartTLS), so the hub's
        # sign-ins prove it uses it
        self.conf.write_text(
            f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder / "slapd.pid"}
TLSCertificateFile {self.cert}
TLSCertificateKeyFile {key}
security tls=1
database mdb
suffix "{BASE}"
rootdn "cn=root,{BASE}"
directory {folder / "db"}
maxsize 10485760
"""
        )
        ldif = folder / "entries.ldif"
        ldif.write_text(directory_entries())
        done = subprocess.run(
            [self.slapd, "-T", "add", "-f", str(self.conf), "-l", str(ldif)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        self.log_path = folder / "slapd.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, attempts: int = 3, timeout: float = 30):
        """Start slapd in the foreground (-d: stats to its log), on new ports while taken."""
        for _ in range(attempts):
            self.port = free_port()
            with open(self.log_path, "w") as log:
                self.proc = subprocess.Popen(
                    [self.slapd, "-f", str(self.conf), "-h", self.url, "-d", "stats"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.1)
            self.stop()
            if not PORT_TAKEN.search(self.log()):
                break
        pytest.fail(f"slapd did not come up on {self.url}; its log:\n{self.log()}")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def binds(self, password: str, uid: str) -> bool:
        """Whether uid binds with password, over StartTLS, straight to the directory."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.cert))
        server = ldap3.Server("127.0.0.1", port=self.port, tls=tls)
        conn = ldap3.Connection(server, user=f"uid={uid},{PEOPLE}", password=password)
        conn.open()
        conn.start_tls()
        bound = conn.bind()
        conn.unbind()
        return bound

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    d = Directory(tmp_path_factory.mktemp("slapd"))
    d.start()
    try:
        yield d
    finally:
        d.stop()
        print(f"\n--- slapd log tail ---\n{os.linesep.join(d.log().splitlines()[-30:])}")


@pytest.fixture(scope="module")
def ldap_hub(tmp_path_factory, engine, directory):
    settings = f"""authenticator = "ldapauthenticator.LDAPAuthenticator"

[LDAPAuthenticator]
server_address = "127.0.0.1"
server_port = {directory.port}
tls_strategy = "before_bind"
tls_kwargs = {{ validate = {int(ssl.CERT_REQUIRED)}, ca_certs_file = "{directory.cert}" }}
bind_dn_template = ["uid={{username}},{PEOPLE}"]
allowed_groups = ["{GROUP}"]
"""
    with running_hub(tmp_path_factory.mktemp("hub"), engine.url, "ldap", settings) as h:
        yield h


def sign_in(hub, user: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Post the hub's login form as a browser does; the session and the form's answer."""
    s = requests.Session()
    page = s.get(f"{hub.url}/hub/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": password, "_xsrf": s.cookies.get("_xsrf")},
        allow_redirects=False,
    )
    return s, r


def assert_refused(hub, user: str, password: str):
    s, r = sign_in(hub, user, password)
    assert r.status_code == 403, r.text[:500]
    assert REFUSED in r.text
    assert "jupyterhub-session-id" not in s.cookies
    # not signed in: the home page sends the browser back to the login page
    home = s.get(f"{hub.url}/hub/home")
    assert "/hub/login" in home.url, home.url


def test_a_group_member_signs_in_and_uses_the_platform(ldap_hub, directory):
    s, r = sign_in(ldap_hub, MEMBER, PASSWORDS[MEMBER])
    assert r.status_code == 302, r.text[:500]
    home = s.get(f"{ldap_hub.url}{r.headers['Location']}")
    assert home.status_code == 200
    assert home.url == f"{ldap_hub.url}/hub/home"
    assert MEMBER in home.text and "/hub/logout" in home.text
    # the directory saw the hub bind as the user after StartTLS (it refuses binds without)
    log = directory.log()
    assert f'BIND dn="uid={MEMBER},{PEOPLE}"' in log
    assert "STARTTLS" in log

    # a new LDAP user joins the platform's default group and can use its API
    client = ldap_hub.client(MEMBER, PASSWORDS[MEMBER])
    me = client.session.get(f"{ldap_hub.url}/hub/api/user", timeout=30).json()
    assert me["name"] == MEMBER and me["admin"] is False
    assert me["groups"] == ["workbench-users"]
    assert client.instances.list() == []


def test_a_wrong_password_is_refused(ldap_hub):
    assert_refused(ldap_hub, MEMBER, PASSWORDS[MEMBER] + "x")
    assert f"Failed to bind user '{MEMBER}'" in ldap_hub.log_tail(200)


def test_a_user_outside_the_allowed_group_is_refused(ldap_hub, directory):
    # the password is right: the directory takes it; the group is what refuses
    assert directory.binds(PASSWORDS[OUTSIDER], OUTSIDER)
    assert_refused(ldap_hub, OUTSIDER, PASSWORDS[OUTSIDER])
    log = ldap_hub.log_tail(200)
    assert f"User '{OUTSIDER}' not allowed." in log
    assert f"Failed to bind user '{OUTSIDER}'" not in log


def test_an_unknown_user_is_refused(ldap_hub):
    assert_refused(ldap_hub, UNKNOWN, "any-" + secrets.token_hex(6))
    assert f"Failed to bind user '{UNKNOWN}'" in ldap_hub.log_tail(200)

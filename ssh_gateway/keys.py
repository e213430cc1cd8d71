"""SSH public keys of users: the table, parsing and checking keys, generating key pairs."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column
from workbench.times import aware_utcnow

from hub.db.core import Base

MIN_RSA_BITS = 2048
MAX_NAME = 64
MAX_KEYS_PER_USER = 50
NAME_RE = re.compile(r"^[\w.@+ -]{1,64}$")
KEY_TYPES = {
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ecdsa",
    "ecdsa-sha2-nistp384": "ecdsa",
    "ecdsa-sha2-nistp521": "ecdsa",
    "ssh-rsa": "rsa",
}


class InvalidKey(ValueError):
    """A public key or key name that cannot be registered; the message says what to do."""


class SSHKey(Base):
    """A public key a user signs in to the SSH gateway with."""

    __tablename__ = "ssh_keys"
    __table_args__ = (
        UniqueConstraint("user", "fingerprint", name="uq_ssh_keys_user_fingerprint"),
        UniqueConstraint("user", "name", name="uq_ssh_keys_user_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    key_type: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.key_type,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "created": _iso(self.created),
            "last_used": _iso(self.last_used),
        }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key's wire form ("SHA256:...")."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


@dataclass(frozen=True)
class ParsedKey:
    """A checked public key: its OpenSSH line (without comment), type and fingerprint."""

    public_key: str
    key_type: str
    fingerprint: str
    comment: str


def parse_public_key(text) -> ParsedKey:
    """Check an OpenSSH public key line ("ssh-ed25519 AAAA... comment"); InvalidKey if it is
    malformed or of a refused kind (DSA, RSA under 2048 bits, security-key types)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidKey(
            "'public_key' must be an OpenSSH public key line, such as the content of "
            "~/.ssh/id_ed25519.pub."
        )
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidKey("'public_key' must be one key on one line; register keys one by one.")
    if "PRIVATE KEY" in text:
        raise InvalidKey(
            "That is a private key: never share it. Send the public key (the .pub file)."
        )
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise InvalidKey(
            "Malformed public key: expected '<type> <base64 data> [comment]', as in "
            "~/.ssh/id_ed25519.pub."
        )
    kind, data = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if kind not in KEY_TYPES:
        raise InvalidKey(
            f"Key type {kind!r} is not accepted: use ed25519 (ssh-keygen -t ed25519), ecdsa, "
            f"or rsa with at least {MIN_RSA_BITS} bits."
        )
    try:
        blob = base64.b64decode(data, validate=True)
        key = serialization.load_ssh_public_key(f"{kind} {data}".encode())
    except Exception:  # noqa: BLE001 - any decoding error means a malformed key
        raise InvalidKey(
            "Malformed public key: its data does not decode. Copy the whole line of the .pub file."
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(
                f"RSA key of {key.key_size} bits is too weak: use at least {MIN_RSA_BITS} bits "
                "or, better, ed25519 (ssh-keygen -t ed25519)."
            )
    elif not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        raise InvalidKey(f"Key type {kind!r} is not accepted: use ed25519, ecdsa or rsa.")
    return ParsedKey(
        public_key=f"{kind} {data}",
        key_type=KEY_TYPES[kind],
        fingerprint=fingerprint(blob),
        comment=comment,
    )


def generate_key_pair(comment: str = "") -> tuple[str, str]:
    """A new ed25519 key pair: (OpenSSH private key PEM, public key line). The comment is
    kept to one word of printable characters (a user name may hold anything)."""
    comment = "".join(c if c.isprintable() and not c.isspace() else "_" for c in comment)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return pem, public + (f" {comment}" if comment else "")


def check_name(name) -> str:
    """A key's name, stripped; InvalidKey unless 1 to 64 letters, digits, spaces or . _ - @ +."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidKey("A key needs a 'name', for example 'laptop'.")
    name = name.strip()
    if not NAME_RE.match(name):
        raise InvalidKey(
            f"Invalid key name {name!r}: use 1 to {MAX_NAME} letters, digits, spaces and . _ - @ +."
        )
    return name


# --- queries (run through Database.run, off the event loop) -------------------------------


def list_keys(session: Session, user: str) -> list[dict]:
    rows = session.scalars(select(SSHKey).where(SSHKey.user == user).order_by(SSHKey.id))
    return [row.to_dict() for row in rows]


def add_key(session: Session, user: str, name: str, parsed: ParsedKey) -> dict:
    """Register a checked key; InvalidKey if the user has that key or name already."""
    existing = session.scalars(select(SSHKey).where(SSHKey.user == user)).all()
    if len(existing) >= MAX_KEYS_PER_USER:
        raise InvalidKey(f"You have {MAX_KEYS_PER_USER} keys already; delete one first.")
    for row in existing:
        if row.fingerprint == parsed.fingerprint:
            raise InvalidKey(f"This key is registered already, as {row.name!r}.")
        if row.name == name:
            raise InvalidKey(f"You have a key named {name!r} already; pick another name.")
    row = SSHKey(
        user=user,
        name=name,
        key_type=parsed.key_type,
        public_key=parsed.public_key,
        fingerprint=parsed.fingerprint,
        created=aware_utcnow(),
    )
    session.add(row)
    session.flush()
    return row.to_dict()


def _own_key(session: Session, user: str, key_id) -> SSHKey | None:
    try:
        key_id = int(key_id)
    except (TypeError, ValueError):
        return None
    row = session.get(SSHKey, key_id)
    return row if row is not None and row.user == user else None


def rename_key(session: Session, user: str, key_id, name: str) -> dict | None:
    """Rename a key; None if the user has no such key."""
    row = _own_key(session, user, key_id)
    if row is None:
        return None
    clash = session.scalars(
        select(SSHKey).where(SSHKey.user == user, SSHKey.name == name, SSHKey.id != row.id)
    ).first()
    if clash is not None:
        raise InvalidKey(f"You have a key named {name!r} already; pick another name.")
    row.name = name
    return row.to_dict()


def delete_key(session: Session, user: str, key_id) -> bool:
    row = _own_key(session, user, key_id)
    if row is None:
        return False
    session.delete(row)
    return True


def find_key(
    session: Session, user: str, key_fingerprint: str, *, touch: bool = True
) -> dict | None:
    """The user's key with that fingerprint (with touch, its last use set to now); None if
    the user has no such key."""
    row = session.scalars(
        select(SSHKey).where(SSHKey.user == user, SSHKey.fingerprint == key_fingerprint)
    ).first()
    if row is None:
        return None
    if touch:
        row.last_used = aware_utcnow()
    return row.to_dict()


def forget_user(session: Session, user: str) -> dict[str, int]:
    """A deleted user's keys go with them."""
    from sqlalchemy import delete

    return {"keys": session.execute(delete(SSHKey).where(SSHKey.user == user)).rowcount}

"""API keys, stored hashed.

A keys file holds one key per line as ``name:role:sha256-hex`` (role ``user`` or ``admin``);
``#`` starts a comment. ``tunelab keys add NAME [--admin] --file keys.txt`` makes a random
256-bit key, prints it once and stores only its SHA-256 (a salt or a slow hash adds nothing for
random keys of that length). A presented key is hashed and compared with every stored hash in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.files import atomic_write_text

ROLES = ("user", "admin")


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    digest: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_keys(path: str | Path) -> list[ApiKey]:
    """Parse a keys file; a malformed line is an error naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise TunelabError(f"{p}: cannot read the API keys file ({e.strerror})") from None
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        if (
            len(parts) != 3
            or parts[1] not in ROLES
            or len(parts[2]) != 64
            or any(c not in "0123456789abcdef" for c in parts[2])
        ):
            raise TunelabError(
                f"{p}:{n}: expected name:role:sha256-hex (role user or admin); "
                "make keys with `tunelab keys add NAME --file FILE`"
            )
        keys.append(ApiKey(*parts))
    if not keys:
        raise TunelabError(
            f"{p}: no API keys in the file; add one with `tunelab keys add NAME --file FILE`"
        )
    return keys


def match(keys: list[ApiKey], token: str) -> ApiKey | None:
    """The key ``token`` belongs to; every stored hash is compared (constant time each)."""
    d = digest(token)
    found = None
    for k in keys:
        if hmac.compare_digest(k.digest, d):
            found = k
    return found


def add_key(path: str | Path, name: str, admin: bool = False) -> str:
    """Append a new key to ``path`` (created if needed, written atomically, mode 0600) and
    return the key itself, which is not stored anywhere."""
    if not name or ":" in name or "#" in name or name.strip() != name:
        raise TunelabError(f"key name {name!r}: use letters, digits, '-' or '_'")
    p = Path(path)
    old = p.read_text(encoding="utf-8") if p.is_file() else ""
    if any(line.split(":", 1)[0] == name for line in old.splitlines()):
        raise TunelabError(f"{p}: a key named {name!r} exists already")
    token = "tl-" + secrets.token_urlsafe(32)
    line = f"{name}:{'admin' if admin else 'user'}:{digest(token)}\n"
    text = old + ("" if not old or old.endswith("\n") else "\n") + line
    atomic_write_text(p, text, mode=0o600, what="keys file")
    return token

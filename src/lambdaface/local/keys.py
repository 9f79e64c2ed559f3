"""The local stack's access keys. In remote mode every request must be signed (SigV4) with them.

Where they come from, first found: `--keys-file PATH` (an AWS shared-credentials file), the
environment (LAMBDAFACE_LOCAL_ACCESS_KEY_ID and LAMBDAFACE_LOCAL_SECRET_ACCESS_KEY), the state
folder's `credentials` (kept from an earlier start), else new ones: generated, written to
STATE_DIR/credentials (0600, the AWS CLI reads it with AWS_SHARED_CREDENTIALS_FILE) and printed once.
On loopback without remote mode the stack checks no signature, and its own clients use DUMMY.
"""
from __future__ import annotations

import configparser
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lambdaface.local.files import write_atomic

ACCESS_KEY_ENV = "LAMBDAFACE_LOCAL_ACCESS_KEY_ID"
SECRET_KEY_ENV = "LAMBDAFACE_LOCAL_SECRET_ACCESS_KEY"
KEYS_FILE = "credentials"  # in the state folder


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str

    def boto(self) -> dict[str, str]:
        """boto3.client(...) keyword arguments."""
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}

    def env(self) -> dict[str, str]:
        """The environment variables the AWS SDKs and CLI read."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


DUMMY = Keys("testing", "testing")  # loopback mode: any keys do; the stack's own clients use these


class KeysError(ValueError):
    """A keys file or environment that names no usable keys."""


def read(path: Path) -> Keys:
    """The keys of an AWS shared-credentials file: its [default] section, else its first one."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text())
    except configparser.Error as exc:
        raise KeysError(f"{path}: not a credentials file ({exc})") from None
    sections = parser.sections()
    section = "default" if "default" in sections else (sections[0] if sections else None)
    if section is None:
        raise KeysError(f"{path}: no section with aws_access_key_id and aws_secret_access_key")
    values = parser[section]
    key_id, secret = values.get("aws_access_key_id", "").strip(), values.get("aws_secret_access_key", "").strip()
    if not key_id or not secret:
        raise KeysError(f"{path}: [{section}] lacks aws_access_key_id or aws_secret_access_key")
    return Keys(key_id, secret)


def write(path: Path, keys: Keys) -> None:
    """Write `keys` as an AWS shared-credentials file readable by its owner only (0600)."""
    text = f"[default]\naws_access_key_id = {keys.access_key_id}\naws_secret_access_key = {keys.secret_access_key}\n"
    write_atomic(path, text.encode())


def generate() -> Keys:
    """New random keys, shaped like AWS's (20-character id, 40-character secret)."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "LFLK" + "".join(secrets.choice(alphabet) for _ in range(16))
    return Keys(key_id, secrets.token_urlsafe(30))


def of_client(environ: Mapping[str, str]) -> Keys:
    """The keys a client process signs with: its AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (the stack's
    in remote mode), else DUMMY (any keys do on loopback)."""
    key_id, secret = environ.get("AWS_ACCESS_KEY_ID", ""), environ.get("AWS_SECRET_ACCESS_KEY", "")
    return Keys(key_id, secret) if key_id and secret else DUMMY


def resolve(state_dir: Path, keys_file: Path | None, environ: Mapping[str, str]) -> tuple[Keys, str]:
    """The stack's keys and where they came from ("file", "environment", "state", "generated");
    generated keys are written to STATE_DIR/credentials (0600) before this returns."""
    if keys_file is not None:
        return read(keys_file), "file"
    key_id, secret = environ.get(ACCESS_KEY_ENV, "").strip(), environ.get(SECRET_KEY_ENV, "").strip()
    if key_id or secret:
        if not (key_id and secret):
            raise KeysError(f"set both {ACCESS_KEY_ENV} and {SECRET_KEY_ENV}, or neither")
        return Keys(key_id, secret), "environment"
    kept = state_dir / KEYS_FILE
    if kept.exists():
        os.chmod(kept, 0o600)
        return read(kept), "state"
    keys = generate()
    write(kept, keys)
    return keys, "generated"

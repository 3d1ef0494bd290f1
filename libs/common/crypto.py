"""Secrets at rest: values encrypted with a key derived from `IGNY8_SECRET_KEY`.

Fernet (AES-128-CBC + HMAC-SHA256, with a timestamp) keyed by HKDF-SHA256 over the
platform secret and a purpose label, so two uses of the secret never share a key.
Rotating the platform secret makes old ciphertexts unreadable: re-enter them.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["InvalidToken", "SecretBox", "mask_secret"]


class SecretBox:
    """Encrypts and decrypts short strings (API keys, private keys) for one purpose."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"igny8-secret-box",
            info=purpose.encode(),
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Raises `InvalidToken` when the ciphertext was not made with this key."""
        return self._fernet.decrypt(ciphertext.encode()).decode()


def mask_secret(value: str | None, visible: int = 4) -> str | None:
    """`sk-abcdef123456` → `********3456`: enough to recognise a key, never to use it."""
    if not value:
        return None
    if len(value) <= visible * 2:
        return "*" * len(value)
    return "*" * 8 + value[-visible:]

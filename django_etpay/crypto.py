"""Encryption at rest for each session's ``signature_token``.

The ``signature_token`` is the key that makes a result JWT trustworthy: whoever reads it can
forge a paid result for that session. It is therefore stored encrypted (Fernet: AES-128-CBC
with an HMAC-SHA256, a fresh IV per value), so that a database dump, a backup or a read-only
SQL injection yields no usable key.

Keys come from ``ETPAY["SIGNATURE_KEYS"]`` (a list of secret strings: the first encrypts, all
decrypt) or, when that is unset, from Django's ``SECRET_KEY`` followed by
``SECRET_KEY_FALLBACKS``. Each secret is stretched into a Fernet key with HKDF-SHA256 under a
label of its own, so the value stored here is unrelated to the signing keys Django derives
from the same ``SECRET_KEY``. Rotation: put the new secret first, keep the old ones after it,
run ``manage.py etpay_rotate_keys``, then drop the old ones.

Stored values look like ``fernet:gAAAA...``. Three ``str`` subclasses carry a value between
the database and the model (see :mod:`django_etpay.fields`): :class:`SealedSecret` (the stored
text, as loaded), :class:`RevealedSecret` (the plain key, remembering its stored form) and
:class:`UnreadableSecret` (what a value no configured key opens reads as: random text that
verifies nothing, with the typed error attached). None of them shows its content in ``repr``.
"""

from __future__ import annotations

import base64
import functools
import secrets
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from django_etpay import conf
from django_etpay.exceptions import EtpayConfigurationError, EtpaySecretUnavailableError

#: Marks an encrypted value, and which scheme encrypted it.
PREFIX = "fernet:"

# Fixed HKDF parameters: changing either makes every stored value unreadable.
_HKDF_SALT = b"django-etpay"
_HKDF_INFO = b"django_etpay.PaymentSession.signature_token at rest v1"


def key_secrets() -> list[str]:
    """The secrets keys are derived from, the encrypting one first.

    ``ETPAY["SIGNATURE_KEYS"]`` when set, else ``[SECRET_KEY, *SECRET_KEY_FALLBACKS]``.
    """
    configured: Any = conf.get_setting("SIGNATURE_KEYS")
    if configured:
        if (
            isinstance(configured, str)
            or not isinstance(configured, Sequence)
            or not all(isinstance(secret, str) and secret for secret in configured)
        ):
            raise EtpayConfigurationError(
                'ETPAY["SIGNATURE_KEYS"] must be a list of secret strings, the newest first.'
            )
        return list(configured)
    # Django (4.1+) always defines SECRET_KEY_FALLBACKS, empty by default.
    return [str(settings.SECRET_KEY), *(str(secret) for secret in settings.SECRET_KEY_FALLBACKS)]


def derive_key(secret: str) -> bytes:
    """The Fernet key (urlsafe base64 of 32 bytes) derived from one secret string."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        secret.encode(errors="surrogatepass")
    )
    return base64.urlsafe_b64encode(raw)


@functools.lru_cache(maxsize=8)
def _fernet_for(secrets_in_order: tuple[str, ...]) -> MultiFernet:
    # Keyed on the secrets themselves, so that a settings change (tests, a reload) takes
    # effect at once, while the hot path pays for HKDF only once per process.
    return MultiFernet([Fernet(derive_key(secret)) for secret in secrets_in_order])


def get_fernet() -> MultiFernet:
    """The cached :class:`~cryptography.fernet.MultiFernet` of the configured keys."""
    secrets_in_order = tuple(key_secrets())
    if not all(secrets_in_order):
        raise EtpayConfigurationError(
            'No key to encrypt signature tokens with: set ETPAY["SIGNATURE_KEYS"] or SECRET_KEY.'
        )
    return _fernet_for(secrets_in_order)


#: The errors a stored value that no configured key opens raises in ``cryptography``.
_UNOPENED = (InvalidToken, ValueError)


def _fernet_token(stored: str) -> bytes:
    """The Fernet token inside a stored value; :class:`EtpaySecretUnavailableError` if none."""
    if not stored.startswith(PREFIX):
        raise EtpaySecretUnavailableError("The stored value is not encrypted.")
    # Non-ASCII text is no Fernet token: cryptography refuses it with InvalidToken.
    return stored[len(PREFIX) :].encode(errors="surrogatepass")


def encrypt(plaintext: str) -> str:
    """``plaintext`` encrypted with the first key, as stored: ``fernet:...``."""
    token = get_fernet().encrypt(plaintext.encode(errors="surrogatepass"))
    return PREFIX + token.decode()


def decrypt(stored: str) -> str:
    """The plain text of a stored value; :class:`EtpaySecretUnavailableError` if none opens it."""
    token = _fernet_token(stored)
    try:
        plain = get_fernet().decrypt(token)
    except _UNOPENED:
        raise EtpaySecretUnavailableError("No configured key decrypts the stored value.") from None
    return plain.decode(errors="surrogatepass")


def is_current(stored: str) -> bool:
    """Whether ``stored`` is encrypted with the first (current) key."""
    try:
        token = _fernet_token(stored)
    except EtpaySecretUnavailableError:
        return False
    get_fernet()  # the same configuration errors as everywhere else
    primary = _fernet_for((key_secrets()[0],))
    try:
        primary.decrypt(token)
    except _UNOPENED:
        return False
    return True


def rotate(stored: str) -> str:
    """``stored`` re-encrypted with the first key (any configured key may open it)."""
    token = _fernet_token(stored)
    try:
        rotated = get_fernet().rotate(token)
    except _UNOPENED:
        raise EtpaySecretUnavailableError("No configured key decrypts the stored value.") from None
    return PREFIX + rotated.decode()


class SealedSecret(str):
    """A value as stored (``fernet:...``), not decrypted. ``repr`` hides it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<SealedSecret>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SealedSecret, (str(self),))


class RevealedSecret(str):
    """A decrypted key; remembers :attr:`sealed`, its stored form, so saving rewrites nothing."""

    sealed: SealedSecret

    def __new__(cls, plaintext: str, sealed: SealedSecret) -> RevealedSecret:
        value = super().__new__(cls, plaintext)
        value.sealed = sealed
        return value

    def __repr__(self) -> str:
        return "<RevealedSecret>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (e.g. into a cache) in its stored form only, never in clear.
        return (SealedSecret, (str(self.sealed),))


class UnreadableSecret(str):
    """What a stored value that no configured key opens reads as.

    Its text is random, so that even code that used it as a key by mistake would verify
    nothing; :attr:`error` is the :class:`EtpaySecretUnavailableError` to raise, and
    :attr:`sealed` the stored value, kept as it is when the row is saved.
    """

    sealed: SealedSecret
    error: EtpaySecretUnavailableError

    def __new__(cls, sealed: SealedSecret, error: EtpaySecretUnavailableError) -> UnreadableSecret:
        value = super().__new__(cls, secrets.token_urlsafe(48))
        value.sealed = sealed
        value.error = error
        return value

    def __repr__(self) -> str:
        return "<UnreadableSecret>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (SealedSecret, (str(self.sealed),))


def reveal(value: str) -> str:
    """``value`` itself, or :class:`EtpaySecretUnavailableError` for an :class:`UnreadableSecret`.

    Use it wherever a ``signature_token`` is about to be used as a key.
    """
    if isinstance(value, UnreadableSecret):
        raise value.error
    return value

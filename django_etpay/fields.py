"""A model field for secrets: encrypted at rest, refused by every lookup.

:class:`EncryptedSecretField` holds ``PaymentSession.signature_token``. Code sets and reads the
attribute as the plain key (``session.signature_token = "..."``); the column holds only
``fernet:...`` (see :mod:`django_etpay.crypto`).

It also refuses every lookup and transform (``exact``, ``startswith``, ``isnull``...), so that no
query, admin filter or search can ask the database questions about a key, whichever model the
query starts from: the sessions admin, the notifications admin through ``session__``, or a
shop's own ``Order`` admin through its foreign key. Such a filter raises
:class:`~django.core.exceptions.FieldError`, which Django's admin turns into its "incorrect
lookup" answer, the same whatever the value. ``values()`` and ``values_list()`` return the
stored (encrypted) text, not the key: only the model attribute decrypts.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from django_etpay import crypto
from django_etpay.exceptions import EtpaySecretUnavailableError

logger = logging.getLogger("django_etpay.fields")


class SecretDescriptor(DeferredAttribute):
    """The model attribute: decrypts on first read, stores what is assigned as it is.

    The instance keeps the stored form (:class:`~django_etpay.crypto.SealedSecret`) until the
    attribute is read; then the :class:`~django_etpay.crypto.RevealedSecret` replaces it, so a
    key is decrypted at most once per instance. A value no configured key opens reads as an
    :class:`~django_etpay.crypto.UnreadableSecret` (logged once), never as an exception:
    loading, refreshing and saving such a row keep working and leave its stored value intact.
    """

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance)
        if type(value) is crypto.SealedSecret:
            value = self._reveal(instance, value)
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def _reveal(self, instance: Any, sealed: crypto.SealedSecret) -> str:
        try:
            return crypto.RevealedSecret(crypto.decrypt(sealed), sealed)
        except EtpaySecretUnavailableError:
            label = f"{instance._meta.model_name} {instance.pk}"
            logger.error(
                "The %s of %s cannot be decrypted with the configured keys", self.field.name, label
            )
            error = EtpaySecretUnavailableError(
                f"The {self.field.name} of {label} cannot be decrypted with the configured keys "
                '(ETPAY["SIGNATURE_KEYS"], or SECRET_KEY and SECRET_KEY_FALLBACKS).'
            )
            return crypto.UnreadableSecret(sealed, error)


class EncryptedSecretField(models.TextField):  # type: ignore[type-arg]
    """A text secret, Fernet-encrypted in the column and refused by every lookup.

    The empty string is stored as it is (a session ETpay has not answered yet has no key).
    Any other value set on the attribute is encrypted when the row is saved; a value loaded
    from the database is written back unchanged (no key needed to save a row).
    """

    descriptor_class = SecretDescriptor
    description = "Secret text, encrypted at rest"

    # -- no lookups, no transforms ----------------------------------------------------------

    def get_lookup(self, lookup_name: str) -> None:
        return None

    def get_transform(self, lookup_name: str) -> None:
        return None

    # -- database <-> attribute ---------------------------------------------------------------

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return crypto.SealedSecret(value)

    def to_python(self, value: Any) -> Any:
        # Deserialisation (loaddata) hands over the stored text; everything else passes as is.
        if type(value) is str and value.startswith(crypto.PREFIX):
            return crypto.SealedSecret(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is crypto.SealedSecret:
            return str(value)
        if isinstance(value, crypto.RevealedSecret | crypto.UnreadableSecret):
            return str(value.sealed)
        text = str(value)
        return crypto.encrypt(text) if text else ""

    def _held(self, instance: models.Model) -> Any:
        # The value as the instance holds it (sealed, revealed or newly set), read without the
        # descriptor, so that saving and serialising never need to decrypt.
        if self.attname in instance.__dict__:
            return instance.__dict__[self.attname]
        return getattr(instance, self.attname)  # deferred: the descriptor loads it

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        return self._held(model_instance)

    def value_from_object(self, obj: models.Model) -> Any:
        # Serializers, forms and model_to_dict see the encrypted text, never the key.
        return self.get_prep_value(self._held(obj))

    def formfield(self, **kwargs: Any) -> None:
        return None

"""signature_token encrypted at rest: keys, rotation, unreadable rows, migration, checks."""

from __future__ import annotations

import json
import logging
import pickle
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core import serializers
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from django_etpay import checks, crypto, services
from django_etpay.exceptions import EtpayConfigurationError, EtpaySecretUnavailableError
from django_etpay.models import Notification, PaymentSession
from tests.factories import make_session, mint_jwt, mint_system_error_jwt

pytestmark = pytest.mark.django_db

OLD = "old-signature-secret-0123456789abcdefghijklmnopqrstuv"
NEW = "new-signature-secret-0123456789abcdefghijklmnopqrstuv"
KEY = "sig-at-rest-0123456789abcdef0123456789abcdef0123456789abcdef"
#: KEY as version 0.1.0 stored it with ``SIGNATURE_KEYS = [OLD]``, and the Fernet key it derived.
STORED_BY_0_1 = (
    "fernet:gAAAAABrDK4EWF74R7hGwE2kOCOX7lr8FB9cqWYnkN2qzE-XYXS_z0TPrH8Wb3sziF_nnb8jzWnCShLuuyM31v"
    "616FTWSwHHRXwUayrStyx3VvKre2EdRV5OFwHLCPPhU6xYDTq4QS1gW1gCct5GXAos5_8IGjEmVA=="
)
DERIVED_FROM_OLD = b"_7oDuUm2u5WmZf9IWIZ5fZQpM41eAm4euA3svjrMJ6Y="


def stored(session: PaymentSession) -> str:
    """The column's raw text, read with plain SQL."""
    table = connection.ops.quote_name(PaymentSession._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT signature_token FROM {table} WHERE id = %s", [session.pk])  # noqa: S608
        value: str = cursor.fetchone()[0]
    return value


def write_raw(session: PaymentSession, value: str) -> None:
    table = connection.ops.quote_name(PaymentSession._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET signature_token = %s WHERE id = %s",  # noqa: S608
            [value, session.pk],
        )


def use_keys(settings: Any, *keys: str) -> None:
    settings.ETPAY = {**settings.ETPAY, "SIGNATURE_KEYS": list(keys)}


# -- the field --------------------------------------------------------------------------------


def test_round_trip_reads_the_plain_key_and_stores_only_ciphertext() -> None:
    session = make_session(signature_token=KEY)
    text = stored(session)
    assert text.startswith("fernet:")
    assert KEY not in text
    loaded = PaymentSession.objects.get(pk=session.pk)
    assert loaded.signature_token == KEY
    assert crypto.reveal(loaded.signature_token) == KEY
    assert "sig-at-rest" not in repr(loaded.signature_token)


def test_saving_an_unchanged_row_rewrites_nothing_and_a_new_key_is_encrypted() -> None:
    session = make_session(signature_token=KEY)
    before = stored(session)
    loaded = PaymentSession.objects.get(pk=session.pk)
    assert loaded.signature_token == KEY  # decrypted once, remembered with its stored form
    loaded.save()
    assert stored(session) == before
    loaded.signature_token = "sig-replacement-0123456789abcdef0123456789abcdef"
    loaded.save()
    assert stored(session) != before
    assert PaymentSession.objects.get(pk=session.pk).signature_token.startswith("sig-replace")


def test_empty_key_is_stored_empty() -> None:
    session = make_session(signature_token="", token=None, status="initializing")
    assert stored(session) == ""
    assert not PaymentSession.objects.get(pk=session.pk).signature_token


def test_equal_keys_encrypt_differently() -> None:
    first, second = make_session(signature_token=KEY), make_session(signature_token=KEY)
    assert stored(first) != stored(second)


def test_values_serializers_and_pickles_never_carry_the_plain_key() -> None:
    session = make_session(signature_token=KEY)
    assert KEY not in str(list(PaymentSession.objects.values_list("signature_token")))
    dumped = serializers.serialize("json", PaymentSession.objects.filter(pk=session.pk))
    assert KEY not in dumped
    assert "fernet:" in dumped
    loaded = PaymentSession.objects.get(pk=session.pk)
    assert loaded.signature_token == KEY
    pickled = pickle.dumps(loaded)
    assert KEY.encode() not in pickled
    assert pickle.loads(pickled).signature_token == KEY  # noqa: S301 - our own bytes


def test_loaddata_round_trip_keeps_the_key() -> None:
    session = make_session(signature_token=KEY)
    dumped = serializers.serialize("json", PaymentSession.objects.filter(pk=session.pk))
    PaymentSession.objects.filter(pk=session.pk).update(signature_token="")
    for obj in serializers.deserialize("json", dumped):
        obj.save()
    assert PaymentSession.objects.get(pk=session.pk).signature_token == KEY


def test_the_field_has_no_form_field() -> None:
    field = PaymentSession._meta.get_field("signature_token")
    assert field.formfield() is None


def test_get_fernet_is_cached_per_configuration(settings: Any) -> None:
    use_keys(settings, OLD)
    assert crypto.get_fernet() is crypto.get_fernet()
    first = crypto.get_fernet()
    use_keys(settings, NEW)
    assert crypto.get_fernet() is not first


def test_keys_are_derived_not_used_as_they_are() -> None:
    key = crypto.derive_key(OLD)
    assert len(key) == 44
    assert OLD.encode() not in key
    assert crypto.derive_key(OLD) == key
    assert crypto.derive_key(NEW) != key


def test_a_value_stored_by_an_earlier_release_still_opens(settings: Any) -> None:
    # Written once with OLD by the first release that encrypted keys. Changing how keys are
    # derived (HKDF salt, label, length, text encoding) would make every stored key unreadable
    # and every pending session unverifiable, and only this test would notice.
    use_keys(settings, OLD)
    assert crypto.decrypt(STORED_BY_0_1) == KEY
    assert crypto.is_current(STORED_BY_0_1) is True
    assert crypto.derive_key(OLD) == DERIVED_FROM_OLD


def test_secrets_and_keys_with_lone_surrogates_round_trip(settings: Any) -> None:
    # A surrogate cannot be encoded as UTF-8 in strict mode: neither a key setting nor a value
    # that holds one may crash the hot path.
    assert crypto.derive_key("\ud800") != crypto.derive_key("\udfff")
    use_keys(settings, "secret-with-\ud800-surrogate")
    sealed = crypto.encrypt("key-\udfff")
    assert crypto.decrypt(sealed) == "key-\udfff"
    with pytest.raises(EtpaySecretUnavailableError, match="No configured key decrypts"):
        crypto.decrypt("fernet:\ud800")


@pytest.mark.parametrize("call", [crypto.decrypt, crypto.rotate])
def test_decrypt_and_rotate_name_what_is_wrong(settings: Any, call: Any) -> None:
    use_keys(settings, OLD)
    with pytest.raises(
        EtpaySecretUnavailableError, match=r"^The stored value is not encrypted\.$"
    ):
        call(KEY)
    sealed = crypto.encrypt(KEY)
    use_keys(settings, NEW)
    with pytest.raises(
        EtpaySecretUnavailableError, match=r"^No configured key decrypts the stored value\.$"
    ):
        call(sealed)


def test_is_current_is_false_for_plain_text_and_foreign_keys(settings: Any) -> None:
    use_keys(settings, NEW, OLD)
    assert crypto.is_current(KEY) is False
    assert crypto.is_current("fernet:not-a-token") is False
    assert crypto.is_current(crypto.encrypt(KEY)) is True
    use_keys(settings, OLD)
    sealed_with_old = crypto.encrypt(KEY)
    use_keys(settings, NEW, OLD)
    assert crypto.is_current(sealed_with_old) is False
    rotated = crypto.rotate(sealed_with_old)
    assert crypto.is_current(rotated) is True
    assert crypto.decrypt(rotated) == KEY


def test_secret_values_name_their_type_in_repr_and_pickle_only_sealed(settings: Any) -> None:
    use_keys(settings, OLD)
    sealed = crypto.SealedSecret(crypto.encrypt(KEY))
    revealed = crypto.RevealedSecret(KEY, sealed)
    unreadable = crypto.UnreadableSecret(sealed, EtpaySecretUnavailableError("no key"))
    for value in (sealed, revealed, unreadable):
        assert repr(value) == f"<{type(value).__name__}>"
        assert KEY not in repr(value)
        assert str(sealed) not in repr(value)
        copy = pickle.loads(pickle.dumps(value))  # noqa: S301 - our own bytes
        assert type(copy) is crypto.SealedSecret
        assert str(copy) == str(sealed)
    assert crypto.decrypt(pickle.loads(pickle.dumps(revealed))) == KEY  # noqa: S301


def test_saving_a_loaded_row_decrypts_nothing(settings: Any) -> None:
    session = make_session(signature_token=KEY)
    value = stored(session)
    loaded = PaymentSession.objects.get(pk=session.pk)
    with mock.patch.object(crypto, "decrypt", side_effect=AssertionError("decrypted")) as spy:
        loaded.status = PaymentSession.Status.EXPIRED
        loaded.save()
        row = serializers.serialize("python", [loaded])[0]
    assert spy.call_count == 0
    assert stored(session) == value
    assert row["fields"]["signature_token"] == value


def test_a_deferred_key_is_loaded_when_the_row_is_serialised() -> None:
    session = make_session(signature_token=KEY)
    deferred = PaymentSession.objects.defer("signature_token").get(pk=session.pk)
    row = serializers.serialize("python", [deferred])[0]
    assert row["fields"]["signature_token"] == stored(session)


def test_to_python_keeps_what_is_not_stored_text() -> None:
    field = PaymentSession._meta.get_field("signature_token")
    assert field.to_python(None) is None
    assert field.to_python(KEY) == KEY
    assert type(field.to_python(KEY)) is str
    sealed_text = crypto.encrypt(KEY)
    assert type(field.to_python(sealed_text)) is crypto.SealedSecret


# -- keys from settings, rotation ------------------------------------------------------------


def test_first_key_encrypts_and_every_key_decrypts(settings: Any) -> None:
    use_keys(settings, OLD)
    session = make_session(signature_token=KEY)
    use_keys(settings, NEW, OLD)
    assert PaymentSession.objects.get(pk=session.pk).signature_token == KEY
    assert crypto.is_current(stored(session)) is False
    use_keys(settings, NEW)
    unreadable = PaymentSession.objects.get(pk=session.pk).signature_token
    assert isinstance(unreadable, crypto.UnreadableSecret)
    assert unreadable != KEY


def test_default_keys_follow_secret_key_and_its_fallbacks(settings: Any) -> None:
    settings.ETPAY = {k: v for k, v in settings.ETPAY.items() if k != "SIGNATURE_KEYS"}
    session = make_session(signature_token=KEY)
    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY = "a-rotated-django-secret-key-0123456789abcdefghijkl"
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    assert PaymentSession.objects.get(pk=session.pk).signature_token == KEY
    settings.SECRET_KEY_FALLBACKS = []
    assert isinstance(
        PaymentSession.objects.get(pk=session.pk).signature_token, crypto.UnreadableSecret
    )


@pytest.mark.parametrize("keys", ["one-string", [], [""], [None], 42, [NEW, ""], [NEW, 7]])
def test_bad_key_settings_raise_a_configuration_error(settings: Any, keys: Any) -> None:
    settings.ETPAY = {**settings.ETPAY, "SIGNATURE_KEYS": keys}
    if keys == []:
        # An empty list means "not set": the keys come from SECRET_KEY.
        assert crypto.encrypt("x").startswith("fernet:")
        return
    with pytest.raises(
        EtpayConfigurationError,
        match=r'^ETPAY\["SIGNATURE_KEYS"\] must be a list of secret strings, the newest first\.$',
    ):
        crypto.encrypt("x")


def test_an_empty_secret_key_fallback_is_a_configuration_error(settings: Any) -> None:
    # Django refuses an empty SECRET_KEY itself, not an empty entry in its fallbacks.
    settings.ETPAY = {k: v for k, v in settings.ETPAY.items() if k != "SIGNATURE_KEYS"}
    settings.SECRET_KEY_FALLBACKS = [""]
    with pytest.raises(
        EtpayConfigurationError,
        match=r'^No key to encrypt signature tokens with: set ETPAY\["SIGNATURE_KEYS"\] or '
        r"SECRET_KEY\.$",
    ):
        crypto.encrypt("x")


def test_rotate_keys_command_rotates_encrypts_plaintext_and_reports(settings: Any) -> None:
    use_keys(settings, OLD)
    old_row = make_session(signature_token=KEY)
    current_row = make_session(signature_token=KEY)
    plain_row = make_session(signature_token=KEY)
    write_raw(plain_row, "plain-key-from-an-old-release-0123456789abcdef")
    use_keys(settings, NEW, OLD)
    write_raw(current_row, crypto.encrypt(KEY))
    before = stored(old_row)

    with pytest.raises(CommandError, match="2 keys are not under the current key"):
        call_command("etpay_rotate_keys", "--check", stdout=StringIO())
    assert stored(old_row) == before  # --check changes nothing

    out = StringIO()
    call_command("etpay_rotate_keys", "--batch-size", "2", stdout=out)
    assert "1 under an older key and 1 in clear re-encrypted" in out.getvalue()
    assert crypto.is_current(stored(old_row))
    assert crypto.is_current(stored(plain_row))
    use_keys(settings, NEW)
    assert PaymentSession.objects.get(pk=old_row.pk).signature_token == KEY
    assert PaymentSession.objects.get(pk=plain_row.pk).signature_token.startswith("plain-key")
    check = StringIO()
    call_command("etpay_rotate_keys", "--check", stdout=check)
    assert "0 under an older key and 0 in clear need re-encrypting; 0 unreadable" in (
        check.getvalue()
    )
    for text in (out.getvalue(), check.getvalue()):
        assert KEY not in text
        assert NEW not in text


def test_rotate_keys_command_lists_unreadable_rows_without_their_values(settings: Any) -> None:
    use_keys(settings, OLD)
    session = make_session(signature_token=KEY)
    value = stored(session)
    use_keys(settings, NEW)
    with pytest.raises(CommandError) as info:
        call_command("etpay_rotate_keys", stdout=StringIO())
    message = str(info.value)
    assert f"sessions {session.pk}." in message
    assert value not in message
    assert KEY not in message
    assert stored(session) == value


# -- a row no key opens -----------------------------------------------------------------------


@pytest.fixture
def unreadable_session(settings: Any) -> PaymentSession:
    use_keys(settings, OLD)
    session = make_session(signature_token=KEY)
    use_keys(settings, NEW)
    return session


def test_unreadable_row_loads_refreshes_and_saves_unchanged(
    unreadable_session: PaymentSession, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    value = stored(unreadable_session)
    session = PaymentSession.objects.get(pk=unreadable_session.pk)
    with caplog.at_level(logging.ERROR, logger="django_etpay"):
        key = session.signature_token
    assert isinstance(key, crypto.UnreadableSecret)
    with pytest.raises(EtpaySecretUnavailableError) as info:
        crypto.reveal(key)
    assert f"paymentsession {session.pk}" in str(info.value)
    assert value not in str(info.value) + caplog.text
    assert OLD not in str(info.value) + caplog.text
    session.refresh_from_db()
    session.status = PaymentSession.Status.EXPIRED
    session.save()
    assert stored(session) == value
    use_keys(settings, NEW, OLD)
    assert PaymentSession.objects.get(pk=session.pk).signature_token == KEY


def test_an_unreadable_key_is_logged_and_raised_with_the_row_and_the_settings_to_check(
    unreadable_session: PaymentSession, caplog: pytest.LogCaptureFixture
) -> None:
    session = PaymentSession.objects.get(pk=unreadable_session.pk)
    with caplog.at_level(logging.ERROR, logger="django_etpay"):
        key = session.signature_token
    assert [r.getMessage() for r in caplog.records] == [
        f"The signature_token of paymentsession {session.pk} cannot be decrypted with the "
        "configured keys"
    ]
    assert str(key.error) == (
        f"The signature_token of paymentsession {session.pk} cannot be decrypted with the "
        'configured keys (ETPAY["SIGNATURE_KEYS"], or SECRET_KEY and SECRET_KEY_FALLBACKS).'
    )


def test_result_for_an_unreadable_row_is_rejected_with_its_reason(
    unreadable_session: PaymentSession, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    raw = mint_jwt(unreadable_session)
    with caplog.at_level(logging.DEBUG, logger="django_etpay"):
        responses = [
            client.post("/etpay/notification/", json.dumps({"payment": raw}), "application/json")
            for _ in range(2)
        ]
    # Rejected, not a 5xx: retrying cannot help until the keys are fixed, and the status
    # query (which needs no signature key) settles the session meanwhile.
    assert [r.status_code for r in responses] == [400, 400]
    session = PaymentSession.objects.get(pk=unreadable_session.pk)
    assert session.status == PaymentSession.Status.PENDING
    assert session.needs_reconciliation is True
    records = Notification.objects.filter(session=session)
    assert [(n.outcome, n.reason) for n in records] == [("rejected", "key_unavailable")] * 2
    assert "cannot be decrypted" in records[0].detail
    errors = [
        (r.msg, r.args)
        for r in caplog.records
        if r.name == "django_etpay" and r.levelno >= logging.ERROR
    ]
    assert (
        errors
        == [
            (
                "ETpay %s result for session %s cannot be verified: its signature_token cannot be "
                "decrypted with the configured keys (see etpay_rotate_keys)",
                ("webhook", session.pk),
            )
        ]
        * 2
    )
    assert KEY not in caplog.text
    assert stored(session) not in caplog.text + records[0].detail


def test_system_error_still_verifies_with_the_session_token(
    unreadable_session: PaymentSession, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        notification = services.process_notification(
            mint_system_error_jwt(unreadable_session), channel=Notification.Channel.WEBHOOK
        )
    assert (notification.outcome, notification.reason) == ("duplicate", "system_error")


# -- the data migration -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_existing_keys_counts_rows_and_reverses() -> None:
    before = [("django_etpay", "0001_payment_sessions_and_notifications")]
    after = [("django_etpay", "0002_signature_keys_encrypted_and_storage_caps")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        old_session = old_apps.get_model("django_etpay", "PaymentSession")
        old_notification = old_apps.get_model("django_etpay", "Notification")
        row = old_session.objects.create(
            environment="sandbox",
            merchant_order_id="OC-MIG-1",
            order_amount=1000,
            token="tok-migration-1",
            signature_token=KEY,
            status="pending",
        )
        empty = old_session.objects.create(
            environment="sandbox", merchant_order_id="OC-MIG-2", order_amount=1000
        )
        for outcome in ("rejected", "rejected", "rejected", "duplicate", "accepted"):
            old_notification.objects.create(session=row, channel="webhook", outcome=outcome)

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new_session = executor.loader.project_state(after).apps.get_model(
            "django_etpay", "PaymentSession"
        )
        session = new_session.objects.get(pk=row.pk)
        assert stored(session).startswith("fernet:")
        assert session.signature_token == KEY
        assert (session.stored_rejections, session.stored_duplicates) == (3, 1)
        assert stored(new_session.objects.get(pk=empty.pk)) == ""

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        assert stored(session) == KEY
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


# -- system checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "ids"),
    [
        (None, []),
        ([NEW, OLD], []),
        ("a-single-string-0123456789abcdefghijkl", ["django_etpay.E006"]),
        ([], ["django_etpay.E006"]),
        ([NEW, ""], ["django_etpay.E006"]),
        ([NEW, 42], ["django_etpay.E006"]),
        ([NEW, "short"], ["django_etpay.W003"]),
    ],
)
def test_signature_keys_checks(settings: Any, keys: Any, ids: list[str]) -> None:
    settings.ETPAY = {**settings.ETPAY, "SIGNATURE_KEYS": keys}
    found = [
        m.id for m in checks.check_settings() if m.id in ("django_etpay.E006", "django_etpay.W003")
    ]
    assert found == ids


def test_admin_check_flags_an_admin_that_names_the_key() -> None:
    from django.contrib import admin

    from tests.testshop.admin import OrderAdmin
    from tests.testshop.models import Order

    def on_site(name: str) -> list[Any]:
        return [m for m in checks.check_admin_secrets() if f"(admin site {name!r})" in m.msg]

    # The app's own admin, and a shop's ordinary one, name no secret.
    assert on_site("admin") == []
    site = admin.AdminSite(name="careless-check")

    class CarelessAdmin(OrderAdmin):
        search_fields = ("number", "=payment_session__signature_token")
        list_filter = (("payment_session__signature_token", admin.AllValuesFieldListFilter),)

    site.register(Order, CarelessAdmin)
    try:
        messages = on_site("careless-check")
    finally:
        site.unregister(Order)
    assert [m.id for m in messages] == ["django_etpay.W004", "django_etpay.W004"]
    assert "search_fields" in messages[1].msg
    assert "list_filter" in messages[0].msg

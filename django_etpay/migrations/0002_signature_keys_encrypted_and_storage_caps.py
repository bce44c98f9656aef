"""Encrypt signature tokens at rest, and count what is stored per session.

- ``signature_token`` becomes an ``EncryptedSecretField`` (a text column: the encrypted form of
  a 255-character key is about 430 characters) and every existing key is encrypted with the
  current key (``ETPAY["SIGNATURE_KEYS"][0]``, or the one derived from ``SECRET_KEY``).
  Reversing decrypts them again; it stops, changing nothing, if a key cannot be decrypted.
- ``stored_rejections`` / ``stored_duplicates`` start from the notifications already stored.
- ``Notification.reason`` gains ``key_unavailable``.

The data steps use plain SQL in batches, so they neither load every row at once nor depend on
how the model field behaves in a later release.
"""

from django.db import migrations, models

import django_etpay.fields

BATCH = 500


def _table_and_pk(apps, schema_editor):
    session_model = apps.get_model("django_etpay", "PaymentSession")
    quote = schema_editor.connection.ops.quote_name
    return quote(session_model._meta.db_table), quote(session_model._meta.pk.column)


def _convert_keys(apps, schema_editor, convert, wanted):
    table, pk = _table_and_pk(apps, schema_editor)
    last = None
    with schema_editor.connection.cursor() as cursor:
        while True:
            where = f"WHERE {pk} > %s " if last is not None else ""
            cursor.execute(
                f"SELECT {pk}, signature_token FROM {table} {where}ORDER BY {pk} LIMIT {BATCH}",
                [last] if last is not None else [],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            for row_pk, value in rows:
                if value and wanted(value):
                    cursor.execute(
                        f"UPDATE {table} SET signature_token = %s WHERE {pk} = %s",
                        [convert(row_pk, value), row_pk],
                    )
            last = rows[-1][0]


def encrypt_keys(apps, schema_editor):
    from django_etpay import crypto

    _convert_keys(
        apps,
        schema_editor,
        lambda row_pk, value: crypto.encrypt(value),
        lambda value: not value.startswith(crypto.PREFIX),
    )


def decrypt_keys(apps, schema_editor):
    from django_etpay import crypto
    from django_etpay.exceptions import EtpaySecretUnavailableError

    def decrypt(row_pk, value):
        try:
            return crypto.decrypt(value)
        except EtpaySecretUnavailableError:
            raise RuntimeError(
                f"The signature_token of session {row_pk} cannot be decrypted with the "
                "configured keys; add the key it was encrypted with to ETPAY"
                '["SIGNATURE_KEYS"] (or SECRET_KEY_FALLBACKS) before migrating backwards.'
            ) from None

    _convert_keys(apps, schema_editor, decrypt, lambda value: value.startswith(crypto.PREFIX))


def count_stored_notifications(apps, schema_editor):
    session_model = apps.get_model("django_etpay", "PaymentSession")
    notification_model = apps.get_model("django_etpay", "Notification")
    quote = schema_editor.connection.ops.quote_name
    sessions = quote(session_model._meta.db_table)
    notifications = quote(notification_model._meta.db_table)
    pk = quote(session_model._meta.pk.column)
    fk = quote(notification_model._meta.get_field("session").column)

    def count(outcome):
        return (
            f"(SELECT COUNT(*) FROM {notifications} "
            f"WHERE {notifications}.{fk} = {sessions}.{pk} AND outcome = '{outcome}')"
        )

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {sessions} SET stored_rejections = {count('rejected')}, "
            f"stored_duplicates = {count('duplicate')}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("django_etpay", "0001_payment_sessions_and_notifications"),
    ]

    operations = [
        migrations.AddField(
            model_name="paymentsession",
            name="stored_duplicates",
            field=models.PositiveIntegerField(
                default=0,
                editable=False,
                help_text="Results that changed nothing stored for this session (bounded).",
                verbose_name="repeats stored",
            ),
        ),
        migrations.AddField(
            model_name="paymentsession",
            name="stored_rejections",
            field=models.PositiveIntegerField(
                default=0,
                editable=False,
                help_text="Rejected results stored for this session (bounded).",
                verbose_name="rejections stored",
            ),
        ),
        migrations.AlterField(
            model_name="notification",
            name="reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("malformed", "Malformed"),
                    ("too_large", "Body too large"),
                    ("unknown_session", "Unknown session"),
                    ("bad_signature", "Bad signature"),
                    ("invalid_claims", "Invalid claims"),
                    ("order_mismatch", "Order mismatch"),
                    ("amount_mismatch", "Amount mismatch"),
                    ("currency_mismatch", "Currency mismatch"),
                    ("session_mismatch", "Session mismatch"),
                    ("browser_not_trusted", "Browser results not accepted"),
                    ("system_error", "ETpay system error"),
                    ("not_applicable", "Does not change the status"),
                    ("internal_error", "Internal error"),
                    ("key_unavailable", "Signature key cannot be decrypted"),
                ],
                help_text="Why it was rejected or not applied.",
                max_length=32,
                verbose_name="reason",
            ),
        ),
        migrations.AlterField(
            model_name="paymentsession",
            name="signature_token",
            field=django_etpay.fields.EncryptedSecretField(
                blank=True,
                editable=False,
                help_text=(
                    "Secret key for this session's JWTs, encrypted at rest. Never shown in the "
                    "admin, logs, str or repr, and no query may filter on it."
                ),
                verbose_name="signature token",
            ),
        ),
        migrations.RunPython(encrypt_keys, decrypt_keys, elidable=False),
        migrations.RunPython(count_stored_notifications, migrations.RunPython.noop),
    ]

# Hand-named: the first schema of django_etpay (sessions and the notification log).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='PaymentSession',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='When the row was created.', verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, help_text='When the row last changed.', verbose_name='updated at')),
                ('merchant', models.CharField(blank=True, default='', help_text='Alias in ETPAY["MERCHANTS"]; empty for the default account.', max_length=64, verbose_name='merchant alias')),
                ('environment', models.CharField(choices=[('sandbox', 'sandbox'), ('preproduction', 'preproduction'), ('production', 'production')], help_text='ETpay environment the session was created in.', max_length=16, verbose_name='environment')),
                ('merchant_order_id', models.CharField(help_text="The shop's own order id.", max_length=64, verbose_name='merchant order id')),
                ('order_amount', models.PositiveBigIntegerField(help_text='Amount in whole Chilean pesos (CLP has no minor unit).', verbose_name='amount')),
                ('currency', models.CharField(default='CLP', help_text='ISO 4217 code.', max_length=3, verbose_name='currency')),
                ('customer_email', models.EmailField(blank=True, help_text='Payer e-mail sent to ETpay.', max_length=254, verbose_name='customer e-mail')),
                ('metadata', models.JSONField(blank=True, default=list, help_text='List of {name, value, show} entries shown to the payer.', verbose_name='metadata')),
                ('user_bank_code', models.CharField(blank=True, help_text='e.g. cl_estado.', max_length=32, verbose_name='preselected bank')),
                ('user_rut', models.CharField(blank=True, help_text="RUT prefilled in ETpay's form, digits and check digit.", max_length=12, verbose_name='payer RUT (sent)')),
                ('is_rut_block', models.BooleanField(blank=True, help_text='Whether the RUT field is locked.', null=True, verbose_name='RUT locked')),
                ('payment_completed_url', models.URLField(blank=True, help_text='Sent to ETpay.', max_length=2000, verbose_name='success URL sent')),
                ('payment_cancellation_url', models.URLField(blank=True, help_text='Sent to ETpay.', max_length=2000, verbose_name='cancellation URL sent')),
                ('payment_webhook_url', models.URLField(blank=True, help_text='Sent to ETpay.', max_length=2000, verbose_name='webhook URL sent')),
                ('token', models.CharField(blank=True, help_text="ETpay's session token; empty until ETpay returns it.", max_length=255, null=True, unique=True, verbose_name='session token')),
                ('signature_token', models.CharField(blank=True, editable=False, help_text="Secret key for this session's JWTs. Never shown in the admin, logs, str or repr.", max_length=255, verbose_name='signature token')),
                ('terms_url', models.URLField(blank=True, help_text="ETpay's terms page.", max_length=2000, verbose_name='terms URL')),
                ('status', models.CharField(choices=[('initializing', 'Initializing'), ('pending', 'Pending'), ('paid', 'Paid'), ('failed', 'Failed'), ('expired', 'Expired'), ('error', 'Error')], default='initializing', help_text='Where the session stands.', max_length=16, verbose_name='status')),
                ('payment_token', models.CharField(blank=True, db_index=True, help_text="ETpay's payment id, reported with the result.", max_length=255, verbose_name='payment token')),
                ('payer_bank', models.CharField(blank=True, help_text='As ETpay reported it.', max_length=255, verbose_name='payer bank')),
                ('payer_account', models.CharField(blank=True, help_text='As ETpay reported it.', max_length=255, verbose_name='payer account')),
                ('payer_rut', models.CharField(blank=True, help_text='As ETpay reported it.', max_length=32, verbose_name='payer RUT')),
                ('error', models.TextField(blank=True, help_text='Why initialisation failed, without secrets.', verbose_name='error')),
                ('error_code', models.CharField(blank=True, help_text='Kind of failure: validation, timeout, connection, http_error...', max_length=32, verbose_name='error code')),
                ('outcome_unknown', models.BooleanField(default=False, help_text='ETpay may have acted on a call whose answer was lost (timeout, 5xx).', verbose_name='outcome unknown')),
                ('needs_reconciliation', models.BooleanField(default=False, help_text="ETpay's view of this session should be checked with a status query.", verbose_name='needs reconciliation')),
                ('paid_at', models.DateTimeField(blank=True, help_text='When it became paid.', null=True, verbose_name='paid at')),
                ('completed_at', models.DateTimeField(blank=True, help_text='When a final result (paid or failed) arrived.', null=True, verbose_name='completed at')),
            ],
            options={
                'verbose_name': 'ETpay payment session',
                'verbose_name_plural': 'ETpay payment sessions',
                'ordering': ['-created_at'],
                'indexes': [models.Index(fields=['merchant_order_id'], name='etpay_session_order_idx'), models.Index(fields=['status', 'created_at'], name='etpay_session_status_idx')],
            },
        ),
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('channel', models.CharField(choices=[('webhook', 'Webhook (server to server)'), ('redirect', 'Browser redirect'), ('widget', 'Widget'), ('poll', 'Status query')], help_text='How it arrived.', max_length=16, verbose_name='channel')),
                ('outcome', models.CharField(choices=[('accepted', 'Accepted'), ('duplicate', 'Duplicate'), ('rejected', 'Rejected')], help_text='What was done.', max_length=16, verbose_name='outcome')),
                ('reason', models.CharField(blank=True, choices=[('malformed', 'Malformed'), ('too_large', 'Body too large'), ('unknown_session', 'Unknown session'), ('bad_signature', 'Bad signature'), ('invalid_claims', 'Invalid claims'), ('order_mismatch', 'Order mismatch'), ('amount_mismatch', 'Amount mismatch'), ('currency_mismatch', 'Currency mismatch'), ('session_mismatch', 'Session mismatch'), ('browser_not_trusted', 'Browser results not accepted'), ('system_error', 'ETpay system error'), ('not_applicable', 'Does not change the status'), ('internal_error', 'Internal error')], help_text='Why it was rejected or not applied.', max_length=32, verbose_name='reason')),
                ('detail', models.TextField(blank=True, help_text='Human-readable detail, without secrets.', verbose_name='detail')),
                ('result', models.CharField(blank=True, choices=[('success', 'Success'), ('failure', 'Failure'), ('unknown', 'Unknown')], help_text='The payment outcome the result reported.', max_length=16, verbose_name='reported result')),
                ('status_before', models.CharField(blank=True, help_text='Session status before.', max_length=16, verbose_name='status before')),
                ('status_after', models.CharField(blank=True, help_text='Session status after.', max_length=16, verbose_name='status after')),
                ('payment_token', models.CharField(blank=True, help_text='From the result.', max_length=255, verbose_name='payment token')),
                ('raw_body', models.TextField(blank=True, help_text='What arrived, capped in size.', verbose_name='raw body')),
                ('raw_body_truncated', models.BooleanField(default=False, help_text='Whether raw_body was cut.', verbose_name='raw body truncated')),
                ('claims', models.JSONField(blank=True, help_text='Decoded JWT claims (unverified ones too, for rejected results).', null=True, verbose_name='claims')),
                ('remote_addr', models.GenericIPAddressField(blank=True, help_text="Sender's address.", null=True, verbose_name='remote address')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='When it arrived.', verbose_name='received at')),
                ('session', models.ForeignKey(blank=True, help_text='The session the result names, when it is known.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to='django_etpay.paymentsession')),
            ],
            options={
                'verbose_name': 'ETpay notification',
                'verbose_name_plural': 'ETpay notifications',
                'ordering': ['-created_at'],
                'indexes': [models.Index(fields=['session', 'created_at'], name='etpay_notif_session_idx'), models.Index(fields=['outcome', 'created_at'], name='etpay_notif_outcome_idx')],
            },
        ),
    ]

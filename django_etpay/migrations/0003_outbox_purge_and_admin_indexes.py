# Hand-named: the completion-effect outbox, purge markers, the status-query clock, the admin's
# permissions and the indexes its filters and searches use.

import django.db.models.deletion
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0002_signature_keys_encrypted_and_storage_caps'),
    ]

    operations = [
        migrations.CreateModel(
            name='OutboxEffect',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('payment_completed', 'Payment completed'), ('payment_failed', 'Payment failed'), ('session_expired', 'Session expired')], help_text='The signal to send.', max_length=32, verbose_name='signal')),
                ('previous_status', models.CharField(blank=True, help_text='Status before the change.', max_length=16, verbose_name='previous status')),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('done', 'Delivered'), ('failed', 'Gave up')], default='pending', help_text='Whether every receiver finished.', max_length=16, verbose_name='state')),
                ('attempts', models.PositiveIntegerField(default=0, help_text='Deliveries started so far.', verbose_name='attempts')),
                ('lease_until', models.DateTimeField(help_text='Nobody but the current deliverer sends it before this moment.', verbose_name='leased until')),
                ('claim', models.CharField(blank=True, help_text='Identifies the delivery that holds the lease.', max_length=32, verbose_name='claim')),
                ('last_error', models.TextField(blank=True, help_text='Receivers that raised on the last attempt.', verbose_name='last error')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='When the state changed.', verbose_name='created at')),
                ('delivered_at', models.DateTimeField(blank=True, help_text='When every receiver finished.', null=True, verbose_name='delivered at')),
            ],
            options={
                'verbose_name': 'ETpay effect',
                'verbose_name_plural': 'ETpay effects',
                'ordering': ['-created_at'],
            },
        ),
        migrations.AlterModelOptions(
            name='paymentsession',
            options={'ordering': ['-created_at'], 'permissions': [('view_payer_data', 'Can view payer personal data (RUT, account)'), ('reconcile_paymentsession', 'Can ask ETpay for the status of sessions'), ('expire_paymentsession', 'Can expire pending sessions')], 'verbose_name': 'ETpay payment session', 'verbose_name_plural': 'ETpay payment sessions'},
        ),
        migrations.AddField(
            model_name='notification',
            name='purged_at',
            field=models.DateTimeField(blank=True, help_text="When etpay_purge removed the raw body and the payer's claims.", null=True, verbose_name='raw data purged at'),
        ),
        migrations.AddField(
            model_name='paymentsession',
            name='last_checked_at',
            field=models.DateTimeField(blank=True, help_text='When etpay_reconcile last asked ETpay about this session.', null=True, verbose_name='last status query'),
        ),
        migrations.AddField(
            model_name='paymentsession',
            name='purged_at',
            field=models.DateTimeField(blank=True, help_text="When etpay_purge removed the payer's personal data from this session.", null=True, verbose_name='personal data purged at'),
        ),
        migrations.AlterField(
            model_name='notification',
            name='reason',
            field=models.CharField(blank=True, choices=[('malformed', 'Malformed'), ('too_large', 'Body too large'), ('unknown_session', 'Unknown session'), ('bad_signature', 'Bad signature'), ('invalid_claims', 'Invalid claims'), ('order_mismatch', 'Order mismatch'), ('amount_mismatch', 'Amount mismatch'), ('currency_mismatch', 'Currency mismatch'), ('session_mismatch', 'Session mismatch'), ('browser_not_trusted', 'Browser results not accepted'), ('system_error', 'ETpay system error'), ('not_applicable', 'Does not change the status'), ('internal_error', 'Internal error'), ('key_unavailable', 'Signature key cannot be decrypted'), ('unknown_to_etpay', 'Unknown to ETpay')], help_text='Why it was rejected or not applied.', max_length=32, verbose_name='reason'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['created_at', 'id'], name='etpay_notif_created_idx'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['channel', 'created_at'], name='etpay_notif_channel_idx'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['reason', 'created_at'], name='etpay_notif_reason_idx'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['payment_token'], name='etpay_notif_paytoken_idx'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(condition=models.Q(('outcome', 'rejected')), fields=['created_at', 'session'], name='etpay_notif_rejected_idx'),
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(condition=models.Q(('purged_at__isnull', True)), fields=['created_at'], name='etpay_notif_purge_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(fields=['created_at', 'id'], name='etpay_session_created_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(fields=['environment', 'created_at'], name='etpay_session_env_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(fields=['merchant', 'created_at'], name='etpay_session_merch_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(condition=models.Q(('needs_reconciliation', True)), fields=['created_at', 'id'], name='etpay_session_recon_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(condition=models.Q(('outcome_unknown', True)), fields=['created_at'], name='etpay_session_unknown_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(django.db.models.functions.text.Upper('customer_email'), name='etpay_session_email_idx'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(condition=models.Q(('purged_at__isnull', True)), fields=['created_at'], name='etpay_session_purge_idx'),
        ),
        migrations.AddField(
            model_name='outboxeffect',
            name='notification',
            field=models.ForeignKey(blank=True, help_text='The result that made the change (none for expiry).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='effects', to='django_etpay.notification', verbose_name='notification'),
        ),
        migrations.AddField(
            model_name='outboxeffect',
            name='session',
            field=models.ForeignKey(help_text='The session whose state changed.', on_delete=django.db.models.deletion.PROTECT, related_name='effects', to='django_etpay.paymentsession', verbose_name='session'),
        ),
        migrations.AddIndex(
            model_name='outboxeffect',
            index=models.Index(condition=models.Q(('state', 'pending')), fields=['lease_until'], name='etpay_effect_due_idx'),
        ),
        migrations.AddIndex(
            model_name='outboxeffect',
            index=models.Index(fields=['session', 'created_at'], name='etpay_effect_session_idx'),
        ),
        migrations.AddIndex(
            model_name='outboxeffect',
            index=models.Index(fields=['state', 'created_at'], name='etpay_effect_state_idx'),
        ),
    ]

# Hand-named: the refund ledger, and the outbox effect of a session paid more than once.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# check= before Django 5.1, condition= from then on (the only name Django 6.0 accepts).
CHECK_CONDITION = "condition" if django.VERSION >= (5, 1) else "check"


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0006_order_locks'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Refund',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='When the row was created.', verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, help_text='When the row last changed.', verbose_name='updated at')),
                ('amount', models.PositiveBigIntegerField(help_text="Amount given back, in the session's currency (integer).", verbose_name='amount')),
                ('reason', models.TextField(help_text='Why the money is given back.', verbose_name='reason')),
                ('state', models.CharField(choices=[('requested', 'Requested'), ('completed', 'Completed'), ('failed', 'Failed')], default='requested', help_text='Requested, then completed or failed.', max_length=16, verbose_name='state')),
                ('reference', models.CharField(blank=True, help_text="ETpay's reference of the transfer back, once it is done.", max_length=255, verbose_name='ETpay reference')),
                ('failure_reason', models.TextField(blank=True, help_text='Why the refund could not be made.', verbose_name='failure reason')),
                ('completed_at', models.DateTimeField(blank=True, help_text='When it was confirmed done.', null=True, verbose_name='completed at')),
                ('failed_at', models.DateTimeField(blank=True, help_text='When it was marked failed.', null=True, verbose_name='failed at')),
            ],
            options={
                'verbose_name': 'ETpay refund',
                'verbose_name_plural': 'ETpay refunds',
                'ordering': ['-created_at'],
                'permissions': [('request_refund', 'Can request and settle refunds')],
            },
        ),
        migrations.AlterField(
            model_name='outboxeffect',
            name='kind',
            field=models.CharField(choices=[('payment_completed', 'Payment completed'), ('payment_failed', 'Payment failed'), ('session_expired', 'Session expired'), ('payment_duplicated', 'Paid more than once')], help_text='The signal to send.', max_length=32, verbose_name='signal'),
        ),
        migrations.AddIndex(
            model_name='outboxeffect',
            index=models.Index(condition=models.Q(('kind', 'payment_duplicated')), fields=['session'], name='etpay_effect_dup_idx'),
        ),
        migrations.AddField(
            model_name='refund',
            name='requested_by',
            field=models.ForeignKey(blank=True, help_text='The user who asked for the refund; empty when code asked for it.', null=True, on_delete=django.db.models.deletion.DO_NOTHING, db_constraint=False, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='requested by'),
        ),
        migrations.AddField(
            model_name='refund',
            name='session',
            field=models.ForeignKey(help_text='The paid session the money is given back for.', on_delete=django.db.models.deletion.PROTECT, related_name='refunds', to='django_etpay.paymentsession', verbose_name='session'),
        ),
        migrations.AddIndex(
            model_name='refund',
            index=models.Index(fields=['session', 'state'], name='etpay_refund_session_idx'),
        ),
        migrations.AddIndex(
            model_name='refund',
            index=models.Index(fields=['state', 'created_at'], name='etpay_refund_state_idx'),
        ),
        migrations.AddConstraint(
            model_name='refund',
            constraint=models.CheckConstraint(**{CHECK_CONDITION: models.Q(('amount__gt', 0))}, name='etpay_refund_amount_positive'),
        ),
    ]

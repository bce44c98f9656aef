# Hand-named: one row per order that session_for_order claims, so that an order gets one session.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0004_payment_session_created_by'),
    ]

    operations = [
        migrations.CreateModel(
            name='OrderLock',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('merchant', models.CharField(blank=True, default='', help_text='Alias in ETPAY["MERCHANTS"]; empty for the default account.', max_length=64, verbose_name='merchant alias')),
                ('merchant_order_id', models.CharField(help_text="The shop's own order id.", max_length=64, verbose_name='merchant order id')),
                ('claim', models.CharField(blank=True, help_text="Identifies the request creating the order's session; empty when none.", max_length=32, verbose_name='claim')),
                ('claimed_until', models.DateTimeField(blank=True, help_text='When the claim ends even if its request never finished.', null=True, verbose_name='claimed until')),
            ],
            options={
                'verbose_name': 'ETpay order lock',
                'verbose_name_plural': 'ETpay order locks',
                'constraints': [models.UniqueConstraint(fields=('merchant', 'merchant_order_id'), name='etpay_order_lock_unique')],
            },
        ),
    ]

# Hand-named: one lockable row per order, so that session_for_order creates one session per order.

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
                ('locked_at', models.DateTimeField(help_text='When a session was last looked for or created.', verbose_name='last locked at')),
            ],
            options={
                'verbose_name': 'ETpay order lock',
                'verbose_name_plural': 'ETpay order locks',
                'constraints': [models.UniqueConstraint(fields=('merchant', 'merchant_order_id'), name='etpay_order_lock_unique')],
            },
        ),
    ]

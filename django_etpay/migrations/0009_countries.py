# Hand-named: the country of a session's merchant account (Chile or Mexico), and what a
# Mexican session sends to ETpay: the payer's phone and the payment method (CoDi or SPEI).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0008_unknown_outcomes'),
    ]

    operations = [
        migrations.AddField(
            model_name='paymentsession',
            name='country',
            field=models.CharField(choices=[('CL', 'Chile'), ('MX', 'Mexico')], default='CL', help_text='Country of the merchant account: CL (Chile) or MX (Mexico).', max_length=2, verbose_name='country'),
        ),
        migrations.AddField(
            model_name='paymentsession',
            name='customer_phone',
            field=models.CharField(blank=True, help_text="Mexico: 10-digit phone prefilled in ETpay's CoDi/SPEI form.", max_length=10, verbose_name='payer phone (sent)'),
        ),
        migrations.AddField(
            model_name='paymentsession',
            name='target_flow',
            field=models.CharField(blank=True, choices=[('codi', 'CoDi'), ('spei', 'SPEI')], help_text='Mexico: the payment method preselected, CoDi or SPEI.', max_length=8, verbose_name='payment method (sent)'),
        ),
        migrations.AlterField(
            model_name='paymentsession',
            name='order_amount',
            field=models.PositiveBigIntegerField(help_text='Amount in whole pesos of the currency (CLP or MXN), as sent to ETpay.', verbose_name='amount'),
        ),
        migrations.AlterField(
            model_name='paymentsession',
            name='currency',
            field=models.CharField(default='CLP', help_text='ISO 4217 code, from the account\'s country: CLP or MXN.', max_length=3, verbose_name='currency'),
        ),
        migrations.AlterField(
            model_name='paymentsession',
            name='user_bank_code',
            field=models.CharField(blank=True, help_text='e.g. cl_estado, mx_bbva.', max_length=32, verbose_name='preselected bank'),
        ),
    ]

# Hand-named: the sandbox plays ETpay Mexico too (MXN, the payer's phone, CoDi or SPEI).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("etpay_sandbox", "0001_sandbox_session")]

    operations = [
        migrations.AddField(
            model_name="sandboxsession",
            name="country",
            field=models.CharField(
                default="CL", help_text="The account's: CL or MX.", max_length=2
            ),
        ),
        migrations.AddField(
            model_name="sandboxsession",
            name="currency",
            field=models.CharField(default="CLP", help_text="CLP or MXN.", max_length=3),
        ),
        migrations.AddField(
            model_name="sandboxsession",
            name="customer_phone",
            field=models.CharField(blank=True, help_text="As sent (Mexico).", max_length=10),
        ),
        migrations.AddField(
            model_name="sandboxsession",
            name="target_flow",
            field=models.CharField(
                blank=True,
                help_text="As sent, then as chosen (Mexico): codi or spei.",
                max_length=8,
            ),
        ),
    ]

# Hand-named: PaymentSession.created_by without a database constraint, so that the user model
# may live on another database than the sessions (a database router).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0004_payment_session_created_by'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='paymentsession',
            name='created_by',
            field=models.ForeignKey(blank=True, db_constraint=False, editable=False, help_text="The signed-in user whose request created the session; empty for guests and sessions created without a request. The REST API shows a session's status to them.", null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by'),
        ),
    ]

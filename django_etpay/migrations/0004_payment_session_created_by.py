# Hand-named: who created a session, so that the REST API can show its status to them.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0003_outbox_purge_and_admin_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='paymentsession',
            name='created_by',
            field=models.ForeignKey(blank=True, editable=False, help_text="The signed-in user whose request created the session; empty for guests and sessions created without a request. The REST API shows a session's status to them.", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by'),
        ),
    ]

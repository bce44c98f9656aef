# Hand-named: the staff decision on sessions whose creation outcome stays unknown, and the
# reasons of the status-query records that settle them.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_etpay', '0007_refunds'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='paymentsession',
            name='needs_staff_decision',
            field=models.BooleanField(default=False, help_text="ETpay's status query by order id could not tell which of its sessions, if any, is this one; staff decide (see its status-query results).", verbose_name='needs staff decision'),
        ),
        migrations.AlterField(
            model_name='notification',
            name='reason',
            field=models.CharField(blank=True, choices=[('malformed', 'Malformed'), ('too_large', 'Body too large'), ('unknown_session', 'Unknown session'), ('bad_signature', 'Bad signature'), ('invalid_claims', 'Invalid claims'), ('order_mismatch', 'Order mismatch'), ('amount_mismatch', 'Amount mismatch'), ('currency_mismatch', 'Currency mismatch'), ('session_mismatch', 'Session mismatch'), ('browser_not_trusted', 'Browser results not accepted'), ('system_error', 'ETpay system error'), ('not_applicable', 'Does not change the status'), ('internal_error', 'Internal error'), ('key_unavailable', 'Signature key cannot be decrypted'), ('unknown_to_etpay', 'Unknown to ETpay'), ('session_adopted', 'ETpay session found by order id'), ('ambiguous_order', 'Several ETpay sessions could be this one'), ('no_matching_session', 'No ETpay session matches'), ('staff_decision', 'Decided by staff')], help_text='Why it was rejected or not applied.', max_length=32, verbose_name='reason'),
        ),
        migrations.AddIndex(
            model_name='paymentsession',
            index=models.Index(condition=models.Q(('needs_staff_decision', True)), fields=['created_at'], name='etpay_session_staff_idx'),
        ),
    ]

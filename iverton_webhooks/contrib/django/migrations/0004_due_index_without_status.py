"""The due index's condition: ``due_at IS NOT NULL`` instead of a status list (checked with
``makemigrations --check``).

``due_at`` is NULL exactly when an event is finished, so the index holds the same rows;
but testing each inserted row against ``status IN (...)`` made SQLite build a scratch
table per insert (a temporary file with the default ``temp_store``). The due queries'
``due_at <= now`` implies the new condition, so they still use the index.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("iverton_webhooks", "0003_failed_answers"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="webhookevent", name="iverton_webhooks_due_v2"),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(
                condition=models.Q(due_at__isnull=False),
                fields=["endpoint", "due_at"],
                name="iverton_webhooks_due_v3",
            ),
        ),
    ]

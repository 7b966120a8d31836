"""The inbox table, second version (written by hand, checked with ``makemigrations --check``).

- ``endpoint``: receivers with different endpoints share the table; existing rows
  belong to ``"default"``, the endpoint a receiver has when not given one.
- Event ids are unique per endpoint, not across the table.
- ``type`` holds up to 255 characters, what the envelope accepts (it was 100, and
  PostgreSQL refused a longer signed type with a 503 on every retry).
- The new statuses (``unhandled``, ``quarantined``) in the choices.
- The workers' partial index leads with the endpoint.

Status lists are spelled out here, not imported: a migration is a snapshot of the
schema at the time it was written.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("iverton_webhooks", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="webhookevent",
            name="endpoint",
            field=models.CharField(default="default", max_length=100),
        ),
        # Drop the table-wide unique key before the per-endpoint one replaces it.
        migrations.AlterField(
            model_name="webhookevent",
            name="event_id",
            field=models.CharField(max_length=255, verbose_name="event id"),
        ),
        migrations.AddConstraint(
            model_name="webhookevent",
            constraint=models.UniqueConstraint(
                fields=("event_id", "endpoint"), name="iverton_webhooks_endpoint_event"
            ),
        ),
        migrations.AlterField(
            model_name="webhookevent",
            name="type",
            field=models.CharField(max_length=255),
        ),
        migrations.AlterField(
            model_name="webhookevent",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "pending"),
                    ("processing", "processing"),
                    ("done", "done"),
                    ("unhandled", "unhandled"),
                    ("failed", "failed"),
                    ("dead", "dead"),
                    ("quarantined", "quarantined"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
        migrations.RemoveIndex(model_name="webhookevent", name="iverton_webhooks_due"),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(
                condition=models.Q(("status__in", ("failed", "pending", "processing"))),
                fields=["endpoint", "due_at"],
                name="iverton_webhooks_due_v2",
            ),
        ),
    ]

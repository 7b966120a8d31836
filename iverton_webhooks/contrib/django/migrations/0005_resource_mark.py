"""The newest-only marks: one row per endpoint, resource and guarded handler (see
``ResourceMarks``), unique on those three so the first take of a mark creates it once."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("iverton_webhooks", "0004_due_index_without_status"),
    ]

    operations = [
        migrations.CreateModel(
            name="ResourceMark",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("endpoint", models.CharField(max_length=100)),
                ("resource", models.CharField(max_length=255)),
                ("handler", models.CharField(max_length=255)),
                (
                    "applied_at",
                    models.FloatField(blank=True, null=True, verbose_name="applied event created"),
                ),
                (
                    "applied_id",
                    models.CharField(
                        blank=True, max_length=255, null=True, verbose_name="applied event id"
                    ),
                ),
                ("holder", models.CharField(blank=True, max_length=255, null=True)),
                ("hold_until", models.FloatField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "resource mark",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("endpoint", "resource", "handler"), name="iverton_webhooks_mark_key"
                    )
                ],
            },
        ),
    ]

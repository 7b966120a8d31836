"""Endpoints kept in the database (see ``EndpointRegistry``): one row per endpoint name,
its secrets as the core's JSON text, whether it takes requests, and when it was created
and last changed."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("iverton_webhooks", "0005_resource_mark"),
    ]

    operations = [
        migrations.CreateModel(
            name="WebhookEndpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, unique=True)),
                ("secrets", models.TextField()),
                ("enabled", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(verbose_name="created")),
                ("updated_at", models.DateTimeField(verbose_name="updated")),
            ],
            options={
                "verbose_name": "webhook endpoint",
                "ordering": ("name",),
            },
        ),
    ]

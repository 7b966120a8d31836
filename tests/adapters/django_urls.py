"""The seed's own URL form (no trailing slash after the prefix), and a second endpoint
declared in the URLconf with its own secret and endpoint name."""

from __future__ import annotations

from django.urls import include, path

from iverton_webhooks.contrib.django.urls import webhook_path

SECOND_SECRET = "whsec_second_endpoint_0123456789"

urlpatterns = [
    path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls")),
    webhook_path("webhooks/second", endpoint="second", secret=SECOND_SECRET),
]

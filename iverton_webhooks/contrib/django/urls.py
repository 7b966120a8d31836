"""``path("webhooks/iverton/", include("iverton_webhooks.contrib.django.urls"))``."""

from __future__ import annotations

from django.urls import path

from .views import receive_webhook

app_name = "iverton_webhooks"
urlpatterns = [path("", receive_webhook, name="receive")]

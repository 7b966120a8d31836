"""A URLconf with a ``webhook_path`` below the include's prefix, listed after it: with
the registry on, the include would take its URL for a registered endpoint's name."""

from __future__ import annotations

from django.urls import include, path

from iverton_webhooks.contrib.django.urls import webhook_path
from tests.django.dj_helpers import SECOND_SECRET

urlpatterns = [
    path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls")),
    webhook_path("webhooks/iverton/second", endpoint="second", secret=SECOND_SECRET),
]

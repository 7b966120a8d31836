from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from iverton_webhooks.contrib.django.urls import webhook_path
from tests.django.dj_helpers import SECOND_SECRET

urlpatterns = [
    path("admin/", admin.site.urls),
    # The seed's URL form has no trailing slash; both forms answer.
    path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls")),
    webhook_path("webhooks/second", endpoint="second", secret=SECOND_SECRET, name="second"),
]

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from iverton_webhooks.contrib.django.views import webhook_view
from tests.django.dj_helpers import SECOND_SECRET

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/iverton/", include("iverton_webhooks.contrib.django.urls")),
    path("webhooks/second/", webhook_view(secret=SECOND_SECRET), name="second"),
]

from __future__ import annotations

from django.urls import include, path

urlpatterns = [path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))]

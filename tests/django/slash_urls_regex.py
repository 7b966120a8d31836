"""The webhook URLs under a regex prefix ending in ``/`` (system check W010)."""

from __future__ import annotations

from django.urls import include, re_path

urlpatterns = [re_path(r"^hooks/", include("iverton_webhooks.contrib.django.urls"))]

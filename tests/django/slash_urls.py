"""A URLconf that includes the webhook URLs under a prefix ending in ``/`` (the form the
system check W010 warns about), nested one level to check the prefixes are joined."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path(
        "api/",
        include([path("webhooks/iverton/", include("iverton_webhooks.contrib.django.urls"))]),
    ),
]

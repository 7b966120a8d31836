"""`registry_urls` in the order that keeps the ``webhook_path`` URL its own."""

from __future__ import annotations

from tests.django.registry_urls import urlpatterns as shadowed

urlpatterns = list(reversed(shadowed))

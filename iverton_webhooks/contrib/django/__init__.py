"""Django app for Iverton webhooks.

Add ``"iverton_webhooks.contrib.django"`` to ``INSTALLED_APPS``, set
``IVERTON_WEBHOOKS = {"SECRET": ...}``, include ``iverton_webhooks.contrib.django.urls``
and run ``migrate``. Handlers in any installed app's ``iverton_handlers.py`` are found at
start-up (see `discovery`).
"""

from __future__ import annotations

"""Figures and forms the README states, held to what was measured and what works."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_crash_window_is_stated_as_measured_not_as_microseconds() -> None:
    assert "microseconds" not in README
    assert "45 ms" in README
    assert "0.1 and 3 handlers run twice" in README


def test_the_django_include_has_no_slash_after_the_prefix() -> None:
    for text in (README, (ROOT / "docs" / "quickstart" / "django.md").read_text()):
        assert 'path("webhooks/iverton/", include(' not in text
        assert 'path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))' in text

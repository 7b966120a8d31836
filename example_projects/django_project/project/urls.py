from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # No slash after the prefix: the sender's URL form, and the form with a slash, both answer.
    path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls")),
]

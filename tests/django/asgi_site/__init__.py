"""A Django project served by a real uvicorn in test_django_async.py (configured by its
environment: imported only there, in a subprocess)."""

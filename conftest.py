# Doctests run over the core only: the framework adapters need their framework configured,
# and their own tests (tests/django, tests/flask, tests/starlette) cover them.
collect_ignore_glob = ["iverton_webhooks/contrib/*", "example_projects/*", "benchmarks/*"]

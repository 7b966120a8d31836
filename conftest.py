import importlib.util

# Doctests run over the core only: the framework adapters need their framework configured,
# and their own tests (tests/django, tests/flask, tests/starlette) cover them.
collect_ignore_glob = ["iverton_webhooks/contrib/*", "example_projects/*", "benchmarks/*"]
# --doctest-modules would also import each tests/*/conftest.py as a plain module named
# "conftest", which clashes when several test folders are collected in one run.
collect_ignore_glob += ["tests/*/conftest.py"]

# The server-backed stores import their driver at module level; without the extra
# installed there is nothing to doctest there.
for _module, _driver in (("postgres", "psycopg"), ("redis", "redis")):
    if importlib.util.find_spec(_driver) is None:
        collect_ignore_glob.append(f"iverton_webhooks/inbox/{_module}.py")

"""The registry of store URL schemes: each store registers its schemes in one line, builds
itself from a URL and says whether an inbox exists there; a store from another package
registers the same way, and open_store and the read commands' check know it at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iverton_webhooks import ConfigurationError, MemoryStore, SQLiteStore, inbox
from iverton_webhooks.inbox import missing_inbox, open_store, register_store
from tests.conftest import service_url
from tests.stores import unique_name


class NotebookStore(MemoryStore):
    """A store from "another package": notebook://<name>, an inbox per name."""

    made: dict[str, NotebookStore] = {}

    @classmethod
    def from_url(cls, url: str) -> NotebookStore:
        return cls.made.setdefault(url, cls())

    @classmethod
    def missing_inbox(cls, url: str) -> str | None:
        return None if url in cls.made else f"no notebook at {url}"


@pytest.fixture
def notebook() -> Iterator[None]:
    register_store("notebook", store=NotebookStore)
    yield
    del inbox._SCHEMES["notebook"]
    NotebookStore.made.clear()


def test_a_store_of_another_package_registers_its_scheme_in_one_call(notebook: None) -> None:
    assert missing_inbox("notebook://a") == "no notebook at notebook://a"
    store = open_store("notebook://a")
    assert isinstance(store, NotebookStore)
    assert missing_inbox("notebook://a") is None
    assert open_store("notebook://a") is store


def test_an_unknown_scheme_names_every_registered_one() -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_store("mysql://127.0.0.1/test")
    for scheme in ("memory", "sqlite", "postgresql", "postgres", "redis", "rediss"):
        assert f"'{scheme}://...'" in str(raised.value)
    assert missing_inbox("mysql://127.0.0.1/test") is None  # open_store reports it
    assert missing_inbox("no-scheme") is None


def test_the_stores_of_this_package_are_one_registration_each() -> None:
    source = (Path(inbox.__file__)).read_text()
    assert source.count("register_store(") == 5  # the definition and one line per store
    assert "if scheme ==" not in source


def test_memory_and_sqlite_from_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    assert missing_inbox("memory://") is None
    path = tmp_path / "inbox.sqlite3"
    url = f"sqlite:///{path}"
    assert missing_inbox(url) == f"no inbox at {path}: the file does not exist (check --store)"
    assert not path.exists()  # checking created nothing
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == str(path)
    assert missing_inbox(url) is None
    store.close()
    (tmp_path / "other.db").write_bytes(b"")
    assert "holds no iverton_events table" in str(missing_inbox(f"sqlite:///{tmp_path}/other.db"))


@pytest.mark.postgres
def test_postgres_says_whether_its_table_exists() -> None:
    table = unique_name("iverton_registry")
    url = f"{service_url('postgres')}?table={table}"
    assert missing_inbox(url) == f"no table {table} in test: no inbox there (check --store)"
    store = open_store(url)
    try:
        store.count()  # creates the table
        assert missing_inbox(url) is None
    finally:
        store.close()
        from tests.stores import drop_postgres_table

        drop_postgres_table(service_url("postgres"), table)
    assert "cannot reach" in str(missing_inbox("postgresql://postgres@127.0.0.1:1/test"))


@pytest.mark.redis
def test_redis_says_whether_its_keys_exist() -> None:
    prefix = unique_name("iverton_registry")
    url = f"{service_url('redis')}?prefix={prefix}"
    assert "no keys under {" + prefix + "}" in str(missing_inbox(url))
    store = open_store(url)
    try:
        store.count()  # writes the layout version
        assert missing_inbox(url) is None
    finally:
        store.close()
        from tests.stores import delete_redis_prefix

        delete_redis_prefix(service_url("redis"), prefix)
    assert "cannot reach" in str(missing_inbox("redis://127.0.0.1:1/0"))

"""The disablement warning counts across processes: the sender's deliveries land on any
worker of the server, and it gives up after five failures in a row wherever they were."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from iverton_webhooks import Receiver
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers

ROOT = Path(__file__).resolve().parent.parent

# One process of the server: answers the requests named on its command line and prints
# what the hook saw. Signed with another key (a rotated secret) or with ours.
PROCESS = """
import json, sys
from iverton_webhooks import Receiver, sign
from iverton_webhooks.hooks import Hook
from iverton_webhooks.samples import sample_body

store, secret, *requests = sys.argv[1:]
receiver = Receiver(secret=secret, store=store, runner="inline")
at_risk = []
receiver.hooks.add(lambda notice: at_risk.append(notice.detail), Hook.ENDPOINT_AT_RISK)
statuses = []
for n, kind in enumerate(requests):
    body = sample_body("deal.won", id=f"evt_{sys.argv[0]}_{kind}_{n}_{len(sys.argv)}")
    key = secret if kind == "good" else "whsec_the_new_secret_we_do_not_have"
    statuses.append(receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, key)}).status)
print(json.dumps({"statuses": statuses, "at_risk": at_risk}))
"""


def serve(store: str, *requests: str) -> dict[str, list[object]]:
    """Run one server process over ``store`` answering ``requests`` ("bad" or "good")."""
    done = subprocess.run(
        [sys.executable, "-c", PROCESS, store, SECRET, *requests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_the_third_failure_in_a_row_across_two_processes_raises_the_warning(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    first = serve(store, "bad", "bad")
    assert first == {"statuses": [401, 401], "at_risk": []}  # not before the third
    second = serve(store, "bad")
    assert second["statuses"] == [401]
    (detail,) = second["at_risk"]
    assert "did the secret rotate? configure secrets=[new, old]" in str(detail)


def test_a_2xx_in_another_process_starts_the_count_again(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'inbox.sqlite3'}"
    assert serve(store, "bad", "bad")["at_risk"] == []
    assert serve(store, "good")["statuses"] == [200]
    assert serve(store, "bad", "bad")["at_risk"] == []  # 1 and 2 again, not 3 and 4


def test_the_receiver_counts_in_its_store_by_default() -> None:
    receiver = Receiver(secret=SECRET, store="memory://", runner="inline")
    body = sample_body("deal.won")
    forged = {"X-Iverton-Signature": "sha256=" + "0" * 64}
    for _ in range(2):
        assert receiver.receive("POST", body, forged).status == 401
    assert receiver.store.note_failure("default", "signature") == 3
    assert receiver.receive("POST", body, signed_headers(body)).status == 200
    assert receiver.store.note_failure("default", "signature") == 1


def test_a_flood_of_forged_requests_costs_the_store_three_writes_not_one_each() -> None:
    receiver = Receiver(secret=SECRET, store="memory://", runner="inline")
    writes: list[str] = []
    count = receiver.store.note_failure

    def counted(endpoint: str, kind: str) -> int:
        writes.append(kind)
        return count(endpoint, kind)

    receiver.store.note_failure = counted  # type: ignore[method-assign]
    body = sample_body("deal.won")
    for _ in range(50):
        receiver.receive("POST", body, {"X-Iverton-Signature": "sha256=" + "0" * 64})
    assert len(writes) == 3

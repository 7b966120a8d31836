"""The event catalogue is the one place a family is defined (issue 10 item 6)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import iverton_webhooks
from iverton_webhooks._catalogue import CATALOGUE, Catalogue, Family, Resource

PACKAGE = Path(iverton_webhooks.__file__).parent

NEW_FAMILY = '''

class Invoice(Resource):
    """An invoice (a family added in this one file only)."""

    total: int | None = None

'''
NEW_ENTRY = """        Family(
            "invoice",
            Invoice,
            ("created", "paid"),
            sample={"id": "inv_1", "total": 5},
            action_samples={"paid": {"paid_at": "2024-01-20T16:05:00Z"}},
        ),
"""

# Runs in a fresh interpreter against the edited copy: every derived thing is read from
# the package as a user would import it.
PROBE = """
import json, sys
from iverton_webhooks import EVENT_TYPES, FAMILIES, Router, parse_event
from iverton_webhooks.events import event_model
from iverton_webhooks.samples import sample_body, sample_event

router = Router()


@router.on("invoice.paid")  # a strict router: an unknown name would raise
def paid(event): pass


@router.on("invoice.*")
def any_invoice(event): pass


event = parse_event(sample_body("invoice.paid", id="evt_1"))
result = {
    "types": list(EVENT_TYPES),
    "families": list(FAMILIES),
    "model": type(event.data).__name__,
    "total": event.data.total,
    "known": event.is_known_type,
    "sample": sample_event("invoice.paid")["data"],
    "event_model": event_model("invoice.created").__name__,
    "handlers": len(router.handlers_for("invoice.paid")),
}
try:
    from iverton_webhooks.contrib.django import signals
except ImportError:
    result["signal"] = None
else:
    result["signal"] = signals.SIGNALS["invoice.paid"] is signals.invoice_paid
print(json.dumps(result))
"""


def test_types_models_and_samples_derive_from_a_catalogue() -> None:
    class Invoice(Resource):
        total: int | None = None

    invoice = Family("invoice", Invoice, ("created", "paid"), sample={"id": "inv_1"})
    extended = Catalogue((*CATALOGUE.families, invoice))
    assert extended.types == (*CATALOGUE.types, "invoice.created", "invoice.paid")
    assert extended.names[-1] == "invoice"
    assert extended.model_for("invoice.paid") is Invoice
    assert extended.model_for("deal.won") is CATALOGUE.model_for("deal.won")
    assert extended.model_for("refund.issued") is Resource
    assert extended.sample_data("invoice.paid") == {"id": "inv_1"}
    assert "invoice.paid" in extended
    assert "invoice.paid" not in CATALOGUE


def test_signals_derive_from_a_catalogue() -> None:
    pytest.importorskip("django.dispatch")
    from iverton_webhooks.contrib.django import signals

    assert sorted(signals.SIGNALS) == sorted(CATALOGUE.types)
    for event_type, signal in signals.SIGNALS.items():
        assert getattr(signals, signals.signal_name(event_type)) is signal
    invoice = Family("invoice", Resource, ("paid",), sample={"id": "inv_1"})
    built = signals.build_signals(Catalogue((*CATALOGUE.families, invoice)))
    assert set(built) == {*CATALOGUE.types, "invoice.paid"}


@pytest.mark.parametrize(
    "families",
    [
        (Family("deal", Resource, ("won",), {"id": "d"}),) * 2,  # duplicate family
        (Family("deal", Resource, (), {"id": "d"}),),  # no actions
        (Family("deal", Resource, ("won",), {"name": "no id"}),),  # sample without id
        (Family("deal", Resource, ("won",), {"id": "d"}, {"wonn": {}}),),  # typo'd action
    ],
)
def test_a_malformed_catalogue_is_refused(families: tuple[Family, ...]) -> None:
    with pytest.raises(ValueError, match="family"):
        Catalogue(families)


@pytest.mark.slow
def test_adding_a_family_is_a_change_to_catalogue_py_only(tmp_path: Path) -> None:
    copy = tmp_path / "iverton_webhooks"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = (copy / "_catalogue.py").read_text()
    anchor = "CATALOGUE = Catalogue(\n    (\n"
    assert source.count(anchor) == 1
    edited = source.replace(anchor, NEW_FAMILY + anchor + NEW_ENTRY)
    (copy / "_catalogue.py").write_text(edited)

    run = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["types"] == ["invoice.created", "invoice.paid", *CATALOGUE.types]
    assert result["families"] == ["invoice", *CATALOGUE.names]
    assert result["model"] == "Invoice"
    assert result["total"] == 5
    assert result["known"] is True
    assert result["sample"] == {"id": "inv_1", "total": 5, "paid_at": "2024-01-20T16:05:00Z"}
    assert result["event_model"] == "Event[Invoice]"
    assert result["handlers"] == 2
    django_installed = importlib.util.find_spec("django") is not None
    assert result["signal"] is (True if django_installed else None)

from __future__ import annotations

import contextlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iverton_webhooks import ConfigurationError, InvalidSignature, Verifier, sign, verify
from iverton_webhooks._signature import validate_secrets

PUBLIC_SECRET = "It's a Secret to Everybody"
PUBLIC_BODY = b"Hello, World!"
PUBLIC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_public_vector() -> None:
    assert sign(PUBLIC_BODY, PUBLIC_SECRET) == PUBLIC_SIGNATURE
    assert verify(PUBLIC_BODY, PUBLIC_SIGNATURE, PUBLIC_SECRET) == 0


def test_sign_is_lowercase_hex_of_raw_bytes() -> None:
    body = '{"b": "é",  "a":1}'.encode()
    expected = hmac.new(b"whsec_x", body, "sha256").hexdigest()
    assert sign(body, "whsec_x") == f"sha256={expected}"


def test_rotation_accepts_old_and_new_and_reports_which() -> None:
    body = b'{"id":"evt_1"}'
    assert verify(body, sign(body, "whsec_new"), ["whsec_new", "whsec_old"]) == 0
    assert verify(body, sign(body, "whsec_old"), ["whsec_new", "whsec_old"]) == 1
    with pytest.raises(InvalidSignature):
        verify(body, sign(body, "whsec_removed"), ["whsec_new", "whsec_old"])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256",
        PUBLIC_SIGNATURE[:-1],  # truncated
        PUBLIC_SIGNATURE + "0",  # too long
        PUBLIC_SIGNATURE.replace("sha256=", "SHA256="),
        PUBLIC_SIGNATURE.replace("sha256=", "sha1="),
        " " + PUBLIC_SIGNATURE[1:],
        "sha256=" + " " * 64,
        "sha256=" + "zz" * 32,
        "sha256=" + "é" * 64,
        "sha256=" + "00" * 31 + " 0",  # fromhex would skip the space
        "t=1,v1=" + "00" * 32,
        PUBLIC_SIGNATURE + "," + PUBLIC_SIGNATURE,
    ],
)
def test_malformed_headers_are_invalid(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify(PUBLIC_BODY, header, PUBLIC_SECRET)


@pytest.mark.parametrize("header", [b"sha256=00", 123, ["sha256=00"], object()])
def test_non_string_headers_are_invalid(header: object) -> None:
    with pytest.raises(InvalidSignature):
        verify(PUBLIC_BODY, header, PUBLIC_SECRET)  # type: ignore[arg-type]


def test_uppercase_hex_digest_is_refused_as_the_contract_says_lowercase() -> None:
    upper = "sha256=" + PUBLIC_SIGNATURE[7:].upper()
    with pytest.raises(InvalidSignature):
        verify(PUBLIC_BODY, upper, PUBLIC_SECRET)


def test_non_bytes_body_and_bad_secrets_are_invalid_not_crashes() -> None:
    with pytest.raises(InvalidSignature):
        verify("Hello, World!", PUBLIC_SIGNATURE, PUBLIC_SECRET)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignature):
        verify(PUBLIC_BODY, PUBLIC_SIGNATURE, [])
    with pytest.raises(InvalidSignature):
        verify(PUBLIC_BODY, PUBLIC_SIGNATURE, [None])  # type: ignore[list-item]


def test_verifier_needs_a_secret_and_never_shows_it() -> None:
    with pytest.raises(ValueError, match="secret"):
        Verifier([])
    verifier = Verifier(["whsec_supersecret"])
    assert "supersecret" not in repr(verifier)
    assert verifier.verify(PUBLIC_BODY, sign(PUBLIC_BODY, "whsec_supersecret")) == 0


@settings(max_examples=300)
@given(body=st.binary(max_size=2048), header=st.one_of(st.none(), st.text(max_size=100)))
def test_arbitrary_input_raises_only_invalid_signature(body: bytes, header: str | None) -> None:
    with contextlib.suppress(InvalidSignature):
        verify(body, header, ["whsec_a", "whsec_b"])


@settings(max_examples=200)
@given(body=st.binary(max_size=512), header=st.binary(max_size=80))
def test_arbitrary_bytes_decoded_as_header_raise_only_invalid_signature(
    body: bytes, header: bytes
) -> None:
    text = header.decode("latin-1")
    with pytest.raises(InvalidSignature):
        verify(body, "sha256=" + text, "whsec_a")


@settings(max_examples=200)
@given(body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_single_byte_change_of_body_is_rejected(body: bytes, data: st.DataObject) -> None:
    header = sign(body, "whsec_k")
    index = data.draw(st.integers(0, len(body) - 1))
    delta = data.draw(st.integers(1, 255))
    tampered = bytearray(body)
    tampered[index] = (tampered[index] + delta) % 256
    with pytest.raises(InvalidSignature):
        verify(bytes(tampered), header, "whsec_k")
    assert verify(body, header, "whsec_k") == 0


@settings(max_examples=200)
@given(body=st.binary(max_size=256), data=st.data())
def test_any_single_character_change_of_signature_is_rejected(
    body: bytes, data: st.DataObject
) -> None:
    header = sign(body, "whsec_k")
    index = data.draw(st.integers(len("sha256="), len(header) - 1))
    replacement = data.draw(
        st.sampled_from("0123456789abcdef").filter(lambda c: c != header[index])
    )
    with pytest.raises(InvalidSignature):
        verify(body, header[:index] + replacement + header[index + 1 :], "whsec_k")


def test_huge_body_verifies() -> None:
    body = b"x" * (8 * 1024 * 1024)
    assert verify(body, sign(body, "whsec_k"), "whsec_k") == 0


GOOD = "whsec_9f8a7b6c5d4e3f2a1b0c"


@pytest.mark.parametrize(
    "secrets",
    [
        [GOOD],
        (GOOD, "whsec_old_0a1b2c3d4e5f"),
        ["It's a Secret to Everybody"],
        ["s3cr3t-from-vault"],
    ],
)
def test_validate_secrets_accepts_real_looking_lists(secrets: object) -> None:
    assert validate_secrets(secrets) == list(secrets)  # type: ignore[call-overload]


def test_a_string_for_secrets_is_refused_with_the_list_form() -> None:
    # Iterated, "whsec_abc" would be nine one-character secrets, and "w" would sign.
    with pytest.raises(ConfigurationError, match=r'secrets=\["whsec_\.\.\."\]') as caught:
        validate_secrets("whsec_abc")
    assert "not one string" in str(caught.value)
    with pytest.raises(ConfigurationError, match="list"):
        Verifier("whsec_abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="list"):
        validate_secrets(b"whsec_abc")


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        (None, "not NoneType"),
        ({GOOD}, "not set"),
        ({"new": GOOD}, "not dict"),
        ([], "no webhook secret"),
        ([GOOD, None], "#1 is a NoneType"),
        ([b"whsec_abc123"], "#0 is a bytes"),
        ([""], "#0 is blank"),
        (["   "], "#0 is blank"),
        ([GOOD + "\n"], "#0 has leading or trailing whitespace"),
        ([" " + GOOD], "whitespace"),
        ([GOOD, "\t" + GOOD], "#1 has leading"),
    ],
)
def test_bad_secrets_are_refused_with_the_fix(secrets: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        validate_secrets(secrets)
    assert GOOD not in str(caught.value)  # a secret is never echoed


@pytest.mark.parametrize(
    "placeholder",
    [
        "whsec_...",
        "whsec_xxxxxxxxxxxxx",
        "whsec_XXXXXXXX",
        "whsec_x.x.",
        "whsec_",
        "changeme",
        "CHANGE_ME",
        "secret",
        "Secret",
        "your_secret",
        "your_secret_here",
        "your-secret",
        "your-webhook-secret",
        "<secret>",
        "<your signing secret>",
        "$IVERTON_WEBHOOK_SECRET",
        "${IVERTON_WEBHOOK_SECRET}",
    ],
)
def test_placeholders_are_refused(placeholder: str) -> None:
    with pytest.raises(ConfigurationError, match="placeholder"):
        validate_secrets([GOOD, placeholder])
    with pytest.raises(ConfigurationError, match="placeholder"):
        Verifier([placeholder])


@pytest.mark.parametrize("real", ["whsec_xyz123", "secretive-0a1b2c", "whsec_secret_42"])
def test_secrets_that_merely_contain_placeholder_words_are_accepted(real: str) -> None:
    assert validate_secrets([real]) == [real]


def test_verifier_has_no_unused_count() -> None:
    assert not hasattr(Verifier([GOOD]), "count")


def test_verify_still_takes_one_secret_as_a_string() -> None:
    assert verify(PUBLIC_BODY, sign(PUBLIC_BODY, GOOD), GOOD) == 0


def test_each_message_is_verified_from_the_secret_alone() -> None:
    # A second body checked by the same verifier must not carry state from the first.
    verifier = Verifier(["whsec_k1", "whsec_k2"])
    bodies = [b"", b"{}", bytes(range(256)) * 20, bytearray(b"[]"), memoryview(b'{"id":"e"}')]
    for body in bodies:
        for index, secret in enumerate(("whsec_k1", "whsec_k2")):
            assert verifier.verify(body, sign(bytes(body), secret)) == index
        with pytest.raises(InvalidSignature):
            verifier.verify(body, sign(bytes(body), "whsec_other"))

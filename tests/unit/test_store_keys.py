"""Channel names and stream keys: pure functions, no event loop."""

from __future__ import annotations

import base64
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_api.keys import (
    CHANNEL_NAME_PATTERN,
    MAX_STREAM_KEY_LENGTH,
    InvalidChannelName,
    hash_stream_key,
    hashes_match,
    is_valid_channel_name,
    new_stream_key,
    strip_key_query,
    usable_key,
    validate_channel_name,
)

NAME_CHARS = string.ascii_lowercase + string.digits + "_-"
valid_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_lowercase + string.digits),
    st.text(NAME_CHARS, max_size=63),
)


@pytest.mark.parametrize("name", ["a", "demo", "0", "my-channel_2", "a" * 64, "9-_"])
def test_valid_names_pass(name: str) -> None:
    validate_channel_name(name)
    assert is_valid_channel_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("a" * 65, "at most 64"),
        ("Demo", "lowercase"),
        ("-demo", "starting with"),
        ("_demo", "starting with"),
        ("de mo", "lowercase"),
        ("demo\n", "lowercase"),
        ("dé", "lowercase"),
        ("a/b", "lowercase"),
        ("../x", "lowercase"),
        (None, "string"),
        (5, "string"),
    ],
)
def test_invalid_names_say_why(name: object, message: str) -> None:
    with pytest.raises(InvalidChannelName, match=message):
        validate_channel_name(name)
    assert not is_valid_channel_name(name)


def test_invalid_name_is_a_value_error() -> None:
    assert issubclass(InvalidChannelName, ValueError)


@given(valid_names)
def test_generated_valid_names_pass(name: str) -> None:
    validate_channel_name(name)


@given(st.text(max_size=80))
def test_validator_agrees_with_documented_pattern(name: str) -> None:
    documented = re.fullmatch(CHANNEL_NAME_PATTERN.removeprefix("^").removesuffix("$"), name)
    assert is_valid_channel_name(name) == (documented is not None)


def test_new_keys_are_url_safe_and_carry_at_least_128_bits() -> None:
    keys = {new_stream_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", key)
        padded = key + "=" * (-len(key) % 4)
        assert len(base64.urlsafe_b64decode(padded)) * 8 >= 128


@pytest.mark.parametrize(
    ("given_key", "expected"),
    [("abc", "abc"), ("abc?foo=bar", "abc"), ("abc?", "abc"), ("abc?x?y", "abc"), ("?x", "")],
)
def test_strip_key_query(given_key: str, expected: str) -> None:
    assert strip_key_query(given_key) == expected


def test_usable_key_rejects_what_cannot_be_ours() -> None:
    assert usable_key("k?x=1") == "k"
    assert usable_key("") is None
    assert usable_key("?only=query") is None
    assert usable_key("k" * (MAX_STREAM_KEY_LENGTH + 1)) is None
    assert usable_key(123) is None


def test_hash_is_sha256_hex_and_matches_only_itself() -> None:
    key = new_stream_key()
    digest = hash_stream_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key not in digest
    assert hashes_match(digest, hash_stream_key(key))
    assert not hashes_match(digest, hash_stream_key(key + "x"))


def test_hash_accepts_any_string() -> None:
    assert len(hash_stream_key("\udcff lone surrogate")) == 64

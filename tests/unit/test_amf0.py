"""AMF0 codec: byte-exact encodings, round trips, real OBS bodies, hostile input."""

from __future__ import annotations

import contextlib
import copy
import math
import pickle
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtmp.amf0 import (
    MAX_NESTING,
    UNDEFINED,
    AMF0Date,
    AMF0Error,
    ECMAArray,
    decode,
    decode_all,
    encode,
    encode_values,
)
from tests.fixtures import OBS_C2S


def f64(value: float) -> bytes:
    return struct.pack(">d", value)


def short(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def roundtrip(value: object) -> object:
    data = encode(value)
    decoded, end = decode(data)
    assert end == len(data)
    return decoded


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, b"\x00" + f64(0.0)),
        (1.5, b"\x00" + f64(1.5)),
        (-2, b"\x00" + f64(-2.0)),
        (True, b"\x01\x01"),
        (False, b"\x01\x00"),
        ("", b"\x02\x00\x00"),
        ("live", b"\x02\x00\x04live"),
        ("é", b"\x02\x00\x02\xc3\xa9"),
        (None, b"\x05"),
        (UNDEFINED, b"\x06"),
        ({}, b"\x03\x00\x00\x09"),
        ({"a": 1}, b"\x03" + short("a") + b"\x00" + f64(1.0) + b"\x00\x00\x09"),
        (ECMAArray(), b"\x08\x00\x00\x00\x00\x00\x00\x09"),
        (
            ECMAArray(x=True),
            b"\x08\x00\x00\x00\x01" + short("x") + b"\x01\x01\x00\x00\x09",
        ),
        ([], b"\x0a\x00\x00\x00\x00"),
        ((None, "a"), b"\x0a\x00\x00\x00\x02\x05\x02\x00\x01a"),
        (AMF0Date(1000.0, -60), b"\x0b" + f64(1000.0) + b"\xff\xc4"),
    ],
)
def test_encoding_is_byte_exact(value: object, expected: bytes) -> None:
    assert encode(value) == expected


def test_int_encodes_as_number_but_bool_does_not() -> None:
    assert encode(7)[0] == 0x00
    assert encode(True)[0] == 0x01
    assert roundtrip(7) == 7.0
    assert type(roundtrip(7)) is float
    assert roundtrip(True) is True


def test_long_string_threshold() -> None:
    at_limit = "x" * 0xFFFF
    over = "x" * 0x10000
    assert encode(at_limit)[0] == 0x02
    assert encode(over)[:5] == b"\x0c\x00\x01\x00\x00"
    assert roundtrip(at_limit) == at_limit
    assert roundtrip(over) == over
    # The threshold is on UTF-8 bytes, not characters.
    wide = "é" * 0x8000
    assert encode(wide)[0] == 0x0C
    assert roundtrip(wide) == wide


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -0.0,
        1e308,
        -5e-324,
        math.inf,
        -math.inf,
        True,
        False,
        "",
        "stream key ✓",
        None,
        {"nested": {"list": [1.0, "two", None, UNDEFINED, False]}},
        ECMAArray({"duration": 0.0, "encoder": "obs"}),
        [ECMAArray(a=[]), {"b": ECMAArray()}],
        AMF0Date(1_700_000_000_000.0, 0),
    ],
)
def test_round_trip(value: object) -> None:
    decoded = roundtrip(value)
    assert decoded == value
    assert type(decoded) is type(value)


def test_nan_round_trips() -> None:
    assert math.isnan(roundtrip(math.nan))  # type: ignore[arg-type]


def test_tuple_decodes_as_list() -> None:
    assert roundtrip((1.0, "a")) == [1.0, "a"]


def test_ecma_array_type_survives_nesting() -> None:
    decoded = roundtrip({"meta": ECMAArray(width=1280.0)})
    assert isinstance(decoded, dict)
    assert type(decoded["meta"]) is ECMAArray
    assert type(decoded) is dict


def test_encode_values_is_concatenation() -> None:
    body = encode_values("connect", 1, {"app": "live"})
    assert body == encode("connect") + encode(1) + encode({"app": "live"})
    assert decode_all(body) == ["connect", 1.0, {"app": "live"}]


def test_decode_reports_offset() -> None:
    body = encode_values("a", 2.0, None)
    value, offset = decode(body)
    assert (value, offset) == ("a", 4)
    value, offset = decode(body, offset)
    assert (value, offset) == (2.0, 13)
    assert decode(body, offset) == (None, 14)
    assert decode(memoryview(body), 4) == (2.0, 13)


def test_decode_all_of_empty_body() -> None:
    assert decode_all(b"") == []


@pytest.mark.parametrize("offset", [-1, 3, 100])
def test_decode_offset_out_of_range(offset: int) -> None:
    with pytest.raises(AMF0Error):
        decode(b"\x05\x05\x05", offset)


def test_undefined_singleton() -> None:
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"
    assert type(UNDEFINED)() is UNDEFINED
    assert copy.deepcopy(UNDEFINED) is UNDEFINED
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED
    assert decode(b"\x06") == (UNDEFINED, 1)


def test_ecma_array_repr_and_equality() -> None:
    array = ECMAArray(a=1.0)
    assert repr(array) == "ECMAArray({'a': 1.0})"
    assert array == {"a": 1.0}


def test_amf0_date_is_frozen() -> None:
    date = AMF0Date(5.0)
    assert date.timezone == 0
    with pytest.raises(AttributeError):
        date.milliseconds = 6.0  # type: ignore[misc]


@pytest.mark.parametrize("value", [object(), b"bytes", {1: "int key"}, {1.5}, 3j])
def test_encode_rejects_what_amf0_cannot_carry(value: object) -> None:
    with pytest.raises(TypeError):
        encode(value)


def test_encode_rejects_overlong_key() -> None:
    with pytest.raises(ValueError):
        encode({"k" * 0x10000: 1})


def nested_lists(depth: int) -> object:
    value: object = None
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_limit_is_symmetric() -> None:
    deepest = nested_lists(MAX_NESTING)
    assert roundtrip(deepest) == deepest
    with pytest.raises(ValueError):
        encode(nested_lists(MAX_NESTING + 1))
    too_deep = b"\x0a\x00\x00\x00\x01" * (MAX_NESTING + 1) + b"\x05"
    with pytest.raises(AMF0Error, match="nesting"):
        decode(too_deep)
    objects = b"\x03\x00\x01k" * (MAX_NESTING + 1) + b"\x05"
    with pytest.raises(AMF0Error, match="nesting"):
        decode(objects)


# --------------------------------------------------------------------------- decode-only types


def test_ecma_array_count_is_only_a_hint() -> None:
    entries = short("a") + b"\x00" + f64(1.0) + short("b") + b"\x05"
    for count in (0, 1, 2, 1000, 0xFFFFFFFF):
        body = b"\x08" + struct.pack(">I", count) + entries + b"\x00\x00\x09"
        value, end = decode(body)
        assert value == {"a": 1.0, "b": None}
        assert type(value) is ECMAArray
        assert end == len(body)


def test_empty_property_name_is_a_property_unless_object_end_follows() -> None:
    body = b"\x03" + short("") + b"\x05" + b"\x00\x00\x09"
    assert decode(body) == ({"": None}, len(body))
    assert roundtrip({"": 1.0}) == {"": 1.0}


def test_typed_object_decodes_as_dict() -> None:
    body = b"\x10" + short("flex.Thing") + short("x") + b"\x01\x01" + b"\x00\x00\x09"
    assert decode(body) == ({"x": True}, len(body))


def test_xml_document_decodes_as_string() -> None:
    xml = b"<a/>"
    assert decode(b"\x0f" + struct.pack(">I", len(xml)) + xml) == ("<a/>", 9)


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    value, _ = decode(b"\x02\x00\x02\xff\xfe")
    assert value == "\ufffd\ufffd"


def test_reference_resolves_to_earlier_complex_value() -> None:
    first = encode({"a": 1.0})
    body = b"\x0a\x00\x00\x00\x03" + first + b"\x07\x00\x01" + b"\x07\x00\x01"
    value, end = decode(body)
    assert end == len(body)
    assert isinstance(value, list)
    assert value == [{"a": 1.0}] * 3
    # Index 0 is the strict array itself (still open), index 1 the object.
    assert value[1] is value[0]


def test_references_span_values_in_decode_all() -> None:
    body = encode({"k": "v"}) + b"\x07\x00\x00"
    values = decode_all(body)
    assert values == [{"k": "v"}, {"k": "v"}]
    assert values[0] is values[1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x07\x00\x00", "unknown value"),
        (encode({}) + b"\x07\x00\x01", "unknown value"),
        (b"\x0a\x00\x00\x00\x01\x07\x00\x00", "circular"),
        (b"\x03" + short("self") + b"\x07\x00\x00\x00\x00\x09", "circular"),
        (b"\x07\x00", "truncated"),
    ],
)
def test_bad_references(body: bytes, message: str) -> None:
    with pytest.raises(AMF0Error, match=message):
        decode_all(body)


def test_reference_expansion_is_bounded() -> None:
    # Each level is [previous, previous]: 40 levels would describe 2**40 values.
    body = bytearray(b"\x0a\x00\x00\x00\x02\x05\x05")
    for level in range(1, 40):
        ref = struct.pack(">H", level - 1)
        body += b"\x0a\x00\x00\x00\x02\x07" + ref + b"\x07" + ref
    with pytest.raises(AMF0Error, match="references expand"):
        decode_all(bytes(body))


# --------------------------------------------------------------------------- AMF3 switch


@pytest.mark.parametrize(
    ("amf3", "expected"),
    [
        (b"\x00", UNDEFINED),
        (b"\x01", None),
        (b"\x02", False),
        (b"\x03", True),
        (b"\x04\x00", 0),
        (b"\x04\x7f", 127),
        (b"\x04\x81\x00", 128),
        (b"\x04\xff\x7f", 0x3FFF),
        (b"\x04\x81\x80\x00", 0x4000),
        (b"\x04\xbf\xff\xff\xff", 0x0FFFFFFF),
        (b"\x04\xff\xff\xff\xff", -1),
        (b"\x04\xc0\x80\x80\x00", -(1 << 28)),
        (b"\x05" + f64(2.5), 2.5),
        (b"\x06\x01", ""),
        (b"\x06\x0bhello", "hello"),
    ],
)
def test_amf3_simple_values(amf3: bytes, expected: object) -> None:
    value, end = decode(b"\x11" + amf3)
    assert value == expected
    assert type(value) is type(expected)
    assert end == 1 + len(amf3)


@pytest.mark.parametrize(
    "amf3",
    [b"", b"\x04", b"\x04\x80", b"\x04\xff\xff\xff", b"\x05\x00", b"\x06", b"\x06\x0bhell"],
)
def test_amf3_truncated(amf3: bytes) -> None:
    with pytest.raises(AMF0Error, match="truncated"):
        decode(b"\x11" + amf3)


@pytest.mark.parametrize("amf3", [b"\x06\x00", b"\x07", b"\x08", b"\x09\x01\x01", b"\x0a", b"\xff"])
def test_amf3_unsupported(amf3: bytes) -> None:
    with pytest.raises(AMF0Error, match="AMF3"):
        decode(b"\x11" + amf3)


def test_amf3_value_inside_amf0_command() -> None:
    # An AMF3 command message body: a leading 0x00 byte, then AMF0 with switches.
    body = encode("publish") + encode(5) + b"\x05" + b"\x11\x06\x07key"
    assert decode_all(body) == ["publish", 5.0, None, "key"]


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("marker", [0x04, 0x0D, 0x0E, 0x12, 0x7F, 0xFF])
def test_unknown_markers(marker: int) -> None:
    with pytest.raises(AMF0Error, match=f"0x{marker:02x}"):
        decode(bytes([marker]) + b"\x00" * 16)


def test_object_end_outside_object() -> None:
    with pytest.raises(AMF0Error, match="object-end"):
        decode_all(b"\x05\x09")


def test_strict_array_count_larger_than_body() -> None:
    with pytest.raises(AMF0Error, match="claims"):
        decode(b"\x0a\xff\xff\xff\xff\x05")


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        True,
        "string",
        "x" * 0x10000,
        {"a": {"b": [1.0, "c"]}},
        ECMAArray(width=1280.0, encoder="obs"),
        [None, UNDEFINED, AMF0Date(1.0)],
        AMF0Date(0.0),
    ],
)
def test_every_truncation_is_an_amf0_error(value: object) -> None:
    data = encode(value)
    step = max(1, len(data) // 200)
    for cut in range(0, len(data), step):
        with pytest.raises(AMF0Error):
            decode_all(data[:cut] or b"\x00")


def test_missing_object_end_is_truncation() -> None:
    with pytest.raises(AMF0Error, match="truncated"):
        decode(b"\x08\x00\x00\x00\x01" + short("a") + b"\x05")


# --------------------------------------------------------------------------- Hypothesis

KEYS = st.text(max_size=12)
SCALARS = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    st.floats(allow_nan=False),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(max_size=40),
    st.builds(
        AMF0Date,
        st.floats(allow_nan=False),
        st.integers(min_value=-32768, max_value=32767),
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(KEYS, children, max_size=6),
        st.dictionaries(KEYS, children, max_size=6).map(ECMAArray),
    ),
    max_leaves=40,
)


def tagged(value: object) -> object:
    """A form where True != 1.0 and ECMA arrays differ from objects, for comparing."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, ECMAArray):
        return ("ecma", {k: tagged(v) for k, v in value.items()})
    if isinstance(value, dict):
        return ("object", {k: tagged(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return ("array", [tagged(v) for v in value])
    return value


@given(VALUES)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_hypothesis_round_trip(value: object) -> None:
    data = encode(value)
    decoded, end = decode(data)
    assert end == len(data)
    assert tagged(decoded) == tagged(value)
    assert encode(decoded) == data


@given(st.lists(VALUES, max_size=5))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_hypothesis_round_trip_values(values: list[object]) -> None:
    decoded = decode_all(encode_values(*values))
    assert [tagged(v) for v in decoded] == [tagged(v) for v in values]


@given(st.binary(max_size=600))
@settings(max_examples=1500)
def test_fuzz_random_bytes_raise_only_amf0_error(data: bytes) -> None:
    with contextlib.suppress(AMF0Error):
        decode_all(data)


@given(st.sampled_from([0x03, 0x08, 0x0A, 0x10, 0x11, 0x07, 0x0C, 0x0B]), st.binary(max_size=200))
@settings(max_examples=1500)
def test_fuzz_marker_then_random_bytes(marker: int, rest: bytes) -> None:
    with contextlib.suppress(AMF0Error):
        decode_all(bytes([marker]) + rest)


def obs_body(needle: bytes) -> bytes:
    """The body of the OBS message whose AMF starts with ``needle`` (a type-0 chunk)."""
    stream = OBS_C2S.read_bytes()
    start = stream.find(needle)
    assert start > 12 and stream.count(needle) == 1
    # The type-0 message header sits just before: ... length(3) type(1) stream id(4).
    length = int.from_bytes(stream[start - 8 : start - 5], "big")
    return stream[start : start + length]


@given(st.data())
@settings(max_examples=800)
def test_fuzz_mutated_real_bodies(data: st.DataObject) -> None:
    body = bytearray(
        obs_body(data.draw(st.sampled_from([b"\x02\x00\x07connect", b"\x02\x00\x0d@setDataFrame"])))
    )
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
        body[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(body)))
    with contextlib.suppress(AMF0Error):
        decode_all(bytes(body[:cut]))


# --------------------------------------------------------------------------- real OBS bodies


def test_obs_connect_command() -> None:
    body = obs_body(b"\x02\x00\x07connect")
    assert len(body) == 191
    assert decode_all(body) == [
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "supportsGoAway": True,
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "swfUrl": "rtmp://127.0.0.1:19350/live",
            "tcUrl": "rtmp://127.0.0.1:19350/live",
        },
    ]
    # Our encoder writes the same bytes back, so our replies look like OBS's requests.
    assert encode_values(*decode_all(body)) == body


def test_obs_set_data_frame() -> None:
    body = obs_body(b"\x02\x00\x0d@setDataFrame")
    assert len(body) == 410
    name, event, metadata = decode_all(body)
    assert (name, event) == ("@setDataFrame", "onMetaData")
    assert type(metadata) is ECMAArray
    assert len(metadata) == 20
    assert metadata == {
        "duration": 0.0,
        "fileSize": 0.0,
        "width": 1280.0,
        "height": 720.0,
        "videocodecid": 7.0,
        "videodatarate": 2500.0,
        "framerate": 30.0,
        "audiocodecid": 10.0,
        "audiodatarate": 160.0,
        "audiosamplerate": 48000.0,
        "audiosamplesize": 16.0,
        "audiochannels": 2.0,
        "stereo": True,
        "2.1": False,
        "3.1": False,
        "4.0": False,
        "4.1": False,
        "5.1": False,
        "7.1": False,
        "encoder": "obs-output module (libobs version 29.0.2.1-1+b1)",
    }
    assert list(metadata)[:4] == ["duration", "fileSize", "width", "height"]
    assert encode_values(name, event, metadata) == body


def test_obs_bodies_from_memoryview_slices() -> None:
    stream = OBS_C2S.read_bytes()
    start = stream.find(b"\x02\x00\x07connect")
    view = memoryview(stream)[start : start + 191]
    assert decode_all(view)[0] == "connect"
    assert decode(memoryview(stream), start) == ("connect", start + 10)

"""AMF0 values, the encoding of RTMP command and data message bodies.

Pure functions over bytes. Decoding is written for hostile input: every length is
checked against what remains, nesting is capped, and the only exception that leaves
:func:`decode` / :func:`decode_all` is :class:`AMF0Error`, which the connection turns
into a ``RemoteProtocolError``.

Mapping between AMF0 markers and Python values:

====================  =========================================
number (0x00)         ``float`` (``int`` encodes as number)
boolean (0x01)        ``bool``
string (0x02/0x0C)    ``str`` (long string when > 0xFFFF bytes)
object (0x03)         ``dict`` with ``str`` keys
null (0x05)           ``None``
undefined (0x06)      :data:`UNDEFINED`
reference (0x07)      the earlier complex value it points at
ECMA array (0x08)     :class:`ECMAArray`
strict array (0x0A)   ``list`` (``tuple`` encodes too)
date (0x0B)           :class:`AMF0Date`
XML document (0x0F)   ``str`` (decode only)
typed object (0x10)   ``dict`` (decode only; the class name is dropped)
AVM+ (0x11)           the simple AMF3 value that follows (decode only)
====================  =========================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_NESTING",
    "UNDEFINED",
    "AMF0Date",
    "AMF0Error",
    "ECMAArray",
    "decode",
    "decode_all",
    "encode",
    "encode_values",
]

# Commands and metadata nest one or two levels deep. A cap far above that keeps a
# hostile body from driving the recursive decoder into RecursionError or a long stall.
MAX_NESTING: Final = 32

# References let a small body describe a value whose tree is exponentially large
# (``a = [x, x]; b = [a, a]; ...``). Anything that later walks the tree (logging, JSON)
# would pay for that, so the values reached through references are counted and
# capped at this many beyond what the body itself could spell out.
MAX_REFERENCE_EXPANSION: Final = 65_536

_NUMBER: Final = 0x00
_BOOLEAN: Final = 0x01
_STRING: Final = 0x02
_OBJECT: Final = 0x03
_NULL: Final = 0x05
_UNDEFINED: Final = 0x06
_REFERENCE: Final = 0x07
_ECMA_ARRAY: Final = 0x08
_OBJECT_END: Final = 0x09
_STRICT_ARRAY: Final = 0x0A
_DATE: Final = 0x0B
_LONG_STRING: Final = 0x0C
_XML_DOCUMENT: Final = 0x0F
_TYPED_OBJECT: Final = 0x10
_AVMPLUS: Final = 0x11

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_F64: Final = struct.Struct(">d")
_DATE_BODY: Final = struct.Struct(">dh")
_OBJECT_END_BYTES: Final = b"\x00\x00\x09"
_NULL_BYTES: Final = bytes((_NULL,))
_UNDEFINED_BYTES: Final = bytes((_UNDEFINED,))
_TRUE_BYTES: Final = bytes((_BOOLEAN, 1))
_FALSE_BYTES: Final = bytes((_BOOLEAN, 0))


class AMF0Error(ValueError):
    """The bytes are not valid AMF0 (truncated, unknown marker, too deep, ...)."""


class _Undefined:
    """AMF0 ``undefined``: distinct from ``None`` (null) because peers tell them apart."""

    __slots__ = ()
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        # Pickle and copy resolve the module-level name, so the singleton stays single.
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class ECMAArray(dict):  # type: ignore[type-arg]
    """An AMF0 ECMA array: a dict that remembers it is encoded with marker 0x08.

    ``@setDataFrame``/``onMetaData`` is sent as one, and some peers care which of
    object and ECMA array they get back.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ECMAArray({dict.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class AMF0Date:
    """AMF0 date: milliseconds since the Unix epoch plus a (reserved) timezone field."""

    milliseconds: float
    timezone: int = 0


# --------------------------------------------------------------------------- encode


def encode(value: object) -> bytes:
    """Encode one value; raises TypeError for values AMF0 cannot carry."""
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def encode_values(*values: object) -> bytes:
    """Encode values back to back: the layout of a command or data message body."""
    out = bytearray()
    for value in values:
        _encode_into(out, value, 0)
    return bytes(out)


def _encode_into(out: bytearray, value: object, depth: int) -> None:
    # bool before int: bool is an int subclass but has its own marker.
    if value is None:
        out += _NULL_BYTES
    elif value is UNDEFINED:
        out += _UNDEFINED_BYTES
    elif value is True:
        out += _TRUE_BYTES
    elif value is False:
        out += _FALSE_BYTES
    elif isinstance(value, float | int) and not isinstance(value, bool):
        out.append(_NUMBER)
        out += _F64.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            out.append(_LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            out.append(_STRING)
            out += _U16.pack(len(raw))
        out += raw
    elif isinstance(value, AMF0Date):
        out.append(_DATE)
        out += _DATE_BODY.pack(float(value.milliseconds), value.timezone)
    elif isinstance(value, dict):
        if depth >= MAX_NESTING:
            raise ValueError(f"AMF0: value nested deeper than {MAX_NESTING} levels")
        if isinstance(value, ECMAArray):
            out.append(_ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(_OBJECT)
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"AMF0: object keys must be str, not {type(key).__name__}")
            raw = key.encode("utf-8")
            if len(raw) > 0xFFFF:
                raise ValueError("AMF0: object key longer than 65535 bytes")
            out += _U16.pack(len(raw))
            out += raw
            _encode_into(out, item, depth + 1)
        out += _OBJECT_END_BYTES
    elif isinstance(value, list | tuple):
        if depth >= MAX_NESTING:
            raise ValueError(f"AMF0: value nested deeper than {MAX_NESTING} levels")
        out.append(_STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    else:
        raise TypeError(f"AMF0: cannot encode {type(value).__name__}")


# --------------------------------------------------------------------------- decode


def decode(data: bytes | memoryview, offset: int = 0) -> tuple[object, int]:
    """Decode the value at ``offset``; return it and the offset just past it."""
    view = _as_view(data)
    if not 0 <= offset < len(view):
        raise AMF0Error(f"AMF0: no value at offset {offset} (body is {len(view)} bytes)")
    decoder = _Decoder(view)
    return decoder.value(offset, 0)


def decode_all(data: bytes | memoryview) -> list[object]:
    """Decode every value of a message body (references may span the values)."""
    view = _as_view(data)
    decoder = _Decoder(view)
    values: list[object] = []
    offset = 0
    end = len(view)
    while offset < end:
        value, offset = decoder.value(offset, 0)
        values.append(value)
    return values


def _as_view(data: bytes | memoryview) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


class _Decoder:
    """State for one body: the view and AMF0's table of complex values for references."""

    __slots__ = ("complex", "done", "view", "weight", "weight_limit")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        # Every object, ECMA array, strict array and typed object, in the order their
        # markers appear, which is what a reference index counts.
        self.complex: list[object] = []
        # Expanded size (values inside, counting through references) of each finished
        # complex value; None while it is still being decoded.
        self.done: list[int | None] = []
        self.weight = 0
        self.weight_limit = len(view) + MAX_REFERENCE_EXPANSION

    def _need(self, offset: int, size: int, what: str) -> None:
        if offset + size > len(self.view):
            raise AMF0Error(
                f"AMF0: truncated {what} at offset {offset}: need {size} bytes, "
                f"{max(len(self.view) - offset, 0)} left"
            )

    def _text(self, start: int, size: int, what: str) -> str:
        self._need(start, size, what)
        # Peers occasionally send Latin-1 in metadata; a replacement character beats
        # dropping the stream over a title.
        return str(self.view[start : start + size], "utf-8", "replace")

    def _key(self, offset: int) -> tuple[str, int]:
        self._need(offset, 2, "property name length")
        (size,) = _U16.unpack_from(self.view, offset)
        offset += 2
        return self._text(offset, size, "property name"), offset + size

    def value(self, offset: int, depth: int) -> tuple[object, int]:
        view = self.view
        if offset >= len(view):
            raise AMF0Error(f"AMF0: truncated body, value marker expected at offset {offset}")
        self.weight += 1
        if self.weight > self.weight_limit:
            raise AMF0Error("AMF0: references expand to too many values")
        marker = view[offset]
        offset += 1
        if marker == _NUMBER:
            self._need(offset, 8, "number")
            return _F64.unpack_from(view, offset)[0], offset + 8
        if marker == _STRING:
            self._need(offset, 2, "string length")
            (size,) = _U16.unpack_from(view, offset)
            offset += 2
            return self._text(offset, size, "string"), offset + size
        if marker == _BOOLEAN:
            self._need(offset, 1, "boolean")
            return view[offset] != 0, offset + 1
        if marker == _NULL:
            return None, offset
        if marker == _UNDEFINED:
            return UNDEFINED, offset
        if marker in (_OBJECT, _ECMA_ARRAY, _TYPED_OBJECT):
            return self._properties(marker, offset, depth)
        if marker == _STRICT_ARRAY:
            return self._strict_array(offset, depth)
        if marker in (_LONG_STRING, _XML_DOCUMENT):
            self._need(offset, 4, "long string length")
            (size,) = _U32.unpack_from(view, offset)
            offset += 4
            return self._text(offset, size, "long string"), offset + size
        if marker == _DATE:
            self._need(offset, 10, "date")
            millis, zone = _DATE_BODY.unpack_from(view, offset)
            return AMF0Date(millis, zone), offset + 10
        if marker == _REFERENCE:
            return self._reference(offset)
        if marker == _AVMPLUS:
            return self._amf3(offset)
        if marker == _OBJECT_END:
            raise AMF0Error(f"AMF0: object-end marker outside an object at offset {offset - 1}")
        raise AMF0Error(f"AMF0: unsupported marker 0x{marker:02x} at offset {offset - 1}")

    def _enter(self, value: object, depth: int, offset: int) -> int:
        if depth >= MAX_NESTING:
            raise AMF0Error(f"AMF0: nesting deeper than {MAX_NESTING} at offset {offset}")
        self.complex.append(value)
        self.done.append(None)
        return len(self.complex) - 1

    def _leave(self, index: int, weight_before: int) -> None:
        self.done[index] = self.weight - weight_before

    def _properties(self, marker: int, offset: int, depth: int) -> tuple[object, int]:
        start = offset - 1
        weight_before = self.weight
        result: dict[str, object]
        if marker == _ECMA_ARRAY:
            # The count is only a hint: encoders get it wrong, the end marker decides.
            self._need(offset, 4, "ECMA array count")
            offset += 4
            result = ECMAArray()
        else:
            if marker == _TYPED_OBJECT:
                _class_name, offset = self._key(offset)
            result = {}
        index = self._enter(result, depth, start)
        view = self.view
        while True:
            key, offset = self._key(offset)
            self._need(offset, 1, "property value")
            if not key and view[offset] == _OBJECT_END:
                offset += 1
                break
            result[key], offset = self.value(offset, depth + 1)
        self._leave(index, weight_before)
        return result, offset

    def _strict_array(self, offset: int, depth: int) -> tuple[object, int]:
        start = offset - 1
        weight_before = self.weight
        self._need(offset, 4, "strict array count")
        (count,) = _U32.unpack_from(self.view, offset)
        offset += 4
        # Every element takes at least one byte, so a larger count is a lie.
        if count > len(self.view) - offset:
            raise AMF0Error(
                f"AMF0: strict array at offset {start} claims {count} elements, "
                f"only {len(self.view) - offset} bytes left"
            )
        result: list[object] = []
        index = self._enter(result, depth, start)
        for _ in range(count):
            item, offset = self.value(offset, depth + 1)
            result.append(item)
        self._leave(index, weight_before)
        return result, offset

    def _reference(self, offset: int) -> tuple[object, int]:
        self._need(offset, 2, "reference")
        (index,) = _U16.unpack_from(self.view, offset)
        if index >= len(self.complex):
            raise AMF0Error(f"AMF0: reference to unknown value #{index} at offset {offset - 1}")
        size = self.done[index]
        if size is None:
            # Resolving it would make the decoded value contain itself.
            raise AMF0Error(f"AMF0: circular reference to value #{index} at offset {offset - 1}")
        self.weight += size
        if self.weight > self.weight_limit:
            raise AMF0Error("AMF0: references expand to too many values")
        return self.complex[index], offset + 2

    def _amf3(self, offset: int) -> tuple[object, int]:
        """The simple AMF3 values an AVM+ switch may carry in a command body."""
        self._need(offset, 1, "AMF3 marker")
        marker = self.view[offset]
        offset += 1
        if marker == 0x00:
            return UNDEFINED, offset
        if marker == 0x01:
            return None, offset
        if marker == 0x02:
            return False, offset
        if marker == 0x03:
            return True, offset
        if marker == 0x04:
            number, offset = self._u29(offset)
            # U29 integers are signed 29-bit two's complement.
            return (number ^ 0x1000_0000) - 0x1000_0000, offset
        if marker == 0x05:
            self._need(offset, 8, "AMF3 double")
            return _F64.unpack_from(self.view, offset)[0], offset + 8
        if marker == 0x06:
            header, offset = self._u29(offset)
            if not header & 1:
                raise AMF0Error(f"AMF3: string references are not supported (offset {offset})")
            size = header >> 1
            return self._text(offset, size, "AMF3 string"), offset + size
        raise AMF0Error(f"AMF3: unsupported marker 0x{marker:02x} at offset {offset - 1}")

    def _u29(self, offset: int) -> tuple[int, int]:
        # Up to three bytes of 7 bits with a continuation bit, then one full byte.
        view = self.view
        result = 0
        for _ in range(3):
            self._need(offset, 1, "AMF3 U29")
            byte = view[offset]
            offset += 1
            if byte < 0x80:
                return (result << 7) | byte, offset
            result = (result << 7) | (byte & 0x7F)
        self._need(offset, 1, "AMF3 U29")
        return (result << 8) | view[offset], offset + 1

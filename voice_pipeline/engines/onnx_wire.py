"""Reading and editing ONNX files on the protobuf wire format, with the field numbers of onnx.proto,
so that no package beyond onnxruntime is needed: a message is a list of (field number, wire type,
value) and only the messages on the path to an edited field are re-encoded (the weights stay the
same bytes). Used to batch the Silero VAD (engines/vad_model.py) and Piper (engines/piper_batch.py), and to cut
Piper's graph into its stages (engines/piper_stream.py)."""

from __future__ import annotations

from collections.abc import Callable

# onnx.proto field numbers
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 1, 5, 11, 12, 13
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 3, 4, 5
TENSOR_NAME = 8  # TensorProto.name (an initializer's)
ATTRIBUTE_NAME, ATTRIBUTE_INTS = 1, 8
VALUE_INFO_NAME, VALUE_INFO_TYPE = 1, 2
TYPE_TENSOR, TENSOR_ELEM_TYPE, TENSOR_SHAPE, SHAPE_DIM, DIM_PARAM = 1, 1, 2, 1, 2
FLOAT, INT64 = 1, 7  # TensorProto.DataType

VARINT, LENGTH_DELIMITED = 0, 2

Field = tuple[int, int, "bytes | int"]


def fields(buffer: bytes) -> list[Field]:
    """(field number, wire type, value) in order; a length-delimited value stays bytes."""
    fields: list[Field] = []
    position = 0
    while position < len(buffer):
        key, position = varint(buffer, position)
        number, wire_type = key >> 3, key & 7
        value: bytes | int
        if wire_type == VARINT:
            value, position = varint(buffer, position)
        elif wire_type == LENGTH_DELIMITED:
            length, position = varint(buffer, position)
            value, position = buffer[position:position + length], position + length
        elif wire_type in (1, 5):  # fixed 64 / fixed 32 bits
            size = 8 if wire_type == 1 else 4
            value, position = buffer[position:position + size], position + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, wire_type, value))
    if position != len(buffer):
        raise ValueError("truncated protobuf message")
    return fields


def message(value: bytes | int) -> list[Field]:
    """A length-delimited field's value read as a message."""
    return fields(as_bytes(value))


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire_type, value in fields:
        out += varint_bytes(number << 3 | wire_type)
        if wire_type == VARINT:
            out += varint_bytes(int(value))
        elif wire_type == LENGTH_DELIMITED:
            out += varint_bytes(len(as_bytes(value))) + as_bytes(value)
        else:
            out += as_bytes(value)
    return bytes(out)


def edit(fields: list[Field], number: int, change: Callable[[bytes], bytes]) -> list[Field]:
    """`fields` with the one length-delimited field `number` passed through `change`."""
    positions = [i for i, field in enumerate(fields) if field[0] == number]
    if len(positions) != 1:
        raise ValueError(f"expected one field {number}, found {len(positions)}")
    edited = list(fields)
    _, wire_type, value = edited[positions[0]]
    edited[positions[0]] = (number, wire_type, change(as_bytes(value)))
    return edited


def varint(buffer: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def varint_bytes(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are ten bytes, two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def as_bytes(value: bytes | int) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def strings(fields: list[Field], number: int) -> list[str]:
    return [as_bytes(value).decode() for n, _, value in fields if n == number]


def string(fields: list[Field], number: int) -> str | None:
    values = strings(fields, number)
    return values[0] if values else None


def ints(fields: list[Field], number: int) -> list[int]:
    """A repeated int64, packed or not (small non-negative values only, as in a perm)."""
    values: list[int] = []
    for n, wire_type, value in fields:
        if n != number:
            continue
        if wire_type == VARINT:
            values.append(int(value))
        else:
            packed, position = as_bytes(value), 0
            while position < len(packed):
                item, position = varint(packed, position)
                values.append(item)
    return values

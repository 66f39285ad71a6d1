"""The Silero VAD v6 ONNX file rewritten so that its rows are streams (batch), not time steps.

As shipped, `input` is [seq_len, 576] with h/c [1, 1, 128]: the rows are consecutive windows of one
stream, fed to the LSTM as a sequence. The encoder before the LSTM treats the rows independently
(convolutions over a batch), so turning the Transpose in front of the LSTM from [0, 2, 1] into
[2, 0, 1] makes the rows a batch of one step each: input [streams, 576], h/c [1, streams, 128], one
probability per row. Nothing else in the graph changes (its weights are the same bytes).

The edit is made on the protobuf wire format, with the field numbers of onnx.proto, so that no
package beyond onnxruntime is needed: only the messages on the path to an edited field are re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

# onnx.proto field numbers
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 11, 12, 13
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTRIBUTE_NAME, _ATTRIBUTE_INTS = 1, 8
_VALUE_INFO_NAME, _VALUE_INFO_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_PARAM = 1, 2, 1, 2

_VARINT, _LENGTH_DELIMITED = 0, 2
_SEQUENCE_FIRST, _BATCH_FIRST = [0, 2, 1], [2, 0, 1]

Field = tuple[int, int, "bytes | int"]


def batched_silero_model(path: Path) -> bytes:
    """The model at `path` with a batch of streams as its rows; raises ValueError for another graph."""
    model = _fields(path.read_bytes())
    return _encode(_edit(model, _MODEL_GRAPH, _rewrite_graph))


def _rewrite_graph(graph_bytes: bytes) -> bytes:
    graph = _fields(graph_bytes)
    nodes = [_fields(_as_bytes(value)) for number, _, value in graph if number == _GRAPH_NODE]
    lstm = _only(node for node in nodes if _string(node, _NODE_OP_TYPE) == "LSTM")
    lstm_inputs, lstm_outputs = _strings(lstm, _NODE_INPUT), _strings(lstm, _NODE_OUTPUT)
    if len(lstm_inputs) < 7 or len(lstm_outputs) < 3:
        raise ValueError("the LSTM has no initial or final state")
    state_names = {*lstm_inputs[5:7], *lstm_outputs[1:3]}
    edited, transposes = [], 0
    for number, wire_type, value in graph:
        if number == _GRAPH_VALUE_INFO:
            continue  # intermediate shapes of the sequence layout: onnxruntime infers them again
        if number == _GRAPH_NODE and _is_transpose_producing(_fields(_as_bytes(value)), lstm_inputs[0]):
            value, transposes = _encode(_edit(_fields(_as_bytes(value)), _NODE_ATTRIBUTE, _batch_first_perm)), transposes + 1
        elif number in (_GRAPH_INPUT, _GRAPH_OUTPUT) and _string(_fields(_as_bytes(value)), _VALUE_INFO_NAME) in state_names:
            value = _encode(_edit(_fields(_as_bytes(value)), _VALUE_INFO_TYPE, _streams_dim))
        edited.append((number, wire_type, value))
    if transposes != 1:
        raise ValueError("no single Transpose feeds the LSTM")
    return _encode(edited)


def _is_transpose_producing(node: list[Field], output: str) -> bool:
    return _string(node, _NODE_OP_TYPE) == "Transpose" and output in _strings(node, _NODE_OUTPUT)


def _batch_first_perm(attribute_bytes: bytes) -> bytes:
    attribute = _fields(attribute_bytes)
    if _string(attribute, _ATTRIBUTE_NAME) != "perm" or _ints(attribute, _ATTRIBUTE_INTS) != _SEQUENCE_FIRST:
        raise ValueError("the Transpose before the LSTM is not perm=[0, 2, 1]")
    kept = [field for field in attribute if field[0] != _ATTRIBUTE_INTS]
    return _encode(kept + [(_ATTRIBUTE_INTS, _VARINT, value) for value in _BATCH_FIRST])


def _streams_dim(type_bytes: bytes) -> bytes:
    """[1, 1, 128] -> [1, "streams", 128]: the second dimension of a state becomes the batch."""
    def shape(shape_bytes: bytes) -> bytes:
        fields = _fields(shape_bytes)
        dims = [i for i, (number, _, _) in enumerate(fields) if number == _SHAPE_DIM]
        if len(dims) != 3:
            raise ValueError("an LSTM state is not three-dimensional")
        fields[dims[1]] = (_SHAPE_DIM, _LENGTH_DELIMITED, _encode([(_DIM_PARAM, _LENGTH_DELIMITED, b"streams")]))
        return _encode(fields)

    def tensor(tensor_bytes: bytes) -> bytes:
        return _encode(_edit(_fields(tensor_bytes), _TENSOR_SHAPE, shape))

    return _encode(_edit(_fields(type_bytes), _TYPE_TENSOR, tensor))


# -- protobuf wire format ---------------------------------------------------------------------


def _fields(buffer: bytes) -> list[Field]:
    """(field number, wire type, value) in order; a length-delimited value stays bytes."""
    fields: list[Field] = []
    position = 0
    while position < len(buffer):
        key, position = _varint(buffer, position)
        number, wire_type = key >> 3, key & 7
        value: bytes | int
        if wire_type == _VARINT:
            value, position = _varint(buffer, position)
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _varint(buffer, position)
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


def _encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire_type, value in fields:
        out += _varint_bytes(number << 3 | wire_type)
        if wire_type == _VARINT:
            out += _varint_bytes(int(value))
        elif wire_type == _LENGTH_DELIMITED:
            out += _varint_bytes(len(_as_bytes(value))) + _as_bytes(value)
        else:
            out += _as_bytes(value)
    return bytes(out)


def _edit(fields: list[Field], number: int, change: Callable[[bytes], bytes]) -> list[Field]:
    """`fields` with the one length-delimited field `number` passed through `change`."""
    positions = [i for i, field in enumerate(fields) if field[0] == number]
    if len(positions) != 1:
        raise ValueError(f"expected one field {number}, found {len(positions)}")
    edited = list(fields)
    _, wire_type, value = edited[positions[0]]
    edited[positions[0]] = (number, wire_type, change(_as_bytes(value)))
    return edited


def _varint(buffer: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _varint_bytes(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are ten bytes, two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _as_bytes(value: bytes | int) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _strings(fields: list[Field], number: int) -> list[str]:
    return [_as_bytes(value).decode() for n, _, value in fields if n == number]


def _string(fields: list[Field], number: int) -> str | None:
    values = _strings(fields, number)
    return values[0] if values else None


def _ints(fields: list[Field], number: int) -> list[int]:
    """A repeated int64, packed or not (small non-negative values only, as in a perm)."""
    values: list[int] = []
    for n, wire_type, value in fields:
        if n != number:
            continue
        if wire_type == _VARINT:
            values.append(int(value))
        else:
            packed, position = _as_bytes(value), 0
            while position < len(packed):
                item, position = _varint(packed, position)
                values.append(item)
    return values


def _only(items: Iterable[list[Field]]) -> list[Field]:
    found = list(items)
    if len(found) != 1:
        raise ValueError(f"expected one LSTM, found {len(found)}")
    return found[0]

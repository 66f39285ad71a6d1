"""The Silero VAD v6 ONNX file rewritten so that its rows are streams (batch), not time steps.

As shipped, `input` is [seq_len, 576] with h/c [1, 1, 128]: the rows are consecutive windows of one
stream, fed to the LSTM as a sequence. The encoder before the LSTM treats the rows independently
(convolutions over a batch), so turning the Transpose in front of the LSTM from [0, 2, 1] into
[2, 0, 1] makes the rows a batch of one step each: input [streams, 576], h/c [1, streams, 128], one
probability per row. Nothing else in the graph changes (its weights are the same bytes).

The edit is made on the protobuf wire format (engines/onnx_wire.py): no package beyond onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from voice_pipeline.engines import onnx_wire as wire

_SEQUENCE_FIRST, _BATCH_FIRST = [0, 2, 1], [2, 0, 1]


def batched_silero_model(path: Path) -> bytes:
    """The model at `path` with a batch of streams as its rows; raises ValueError for another graph."""
    model = wire.fields(path.read_bytes())
    return wire.encode(wire.edit(model, wire.MODEL_GRAPH, _rewrite_graph))


def _rewrite_graph(graph_bytes: bytes) -> bytes:
    graph = wire.fields(graph_bytes)
    nodes = [wire.message(value) for number, _, value in graph if number == wire.GRAPH_NODE]
    lstm = _only(node for node in nodes if wire.string(node, wire.NODE_OP_TYPE) == "LSTM")
    lstm_inputs, lstm_outputs = wire.strings(lstm, wire.NODE_INPUT), wire.strings(lstm, wire.NODE_OUTPUT)
    if len(lstm_inputs) < 7 or len(lstm_outputs) < 3:
        raise ValueError("the LSTM has no initial or final state")
    state_names = {*lstm_inputs[5:7], *lstm_outputs[1:3]}
    edited, transposes = [], 0
    for number, wire_type, value in graph:
        if number == wire.GRAPH_VALUE_INFO:
            continue  # intermediate shapes of the sequence layout: onnxruntime infers them again
        if number == wire.GRAPH_NODE and _is_transpose_producing(wire.message(value), lstm_inputs[0]):
            value = wire.encode(wire.edit(wire.message(value), wire.NODE_ATTRIBUTE, _batch_first_perm))
            transposes += 1
        elif (number in (wire.GRAPH_INPUT, wire.GRAPH_OUTPUT)
              and wire.string(wire.message(value), wire.VALUE_INFO_NAME) in state_names):
            value = wire.encode(wire.edit(wire.message(value), wire.VALUE_INFO_TYPE, _streams_dim))
        edited.append((number, wire_type, value))
    if transposes != 1:
        raise ValueError("no single Transpose feeds the LSTM")
    return wire.encode(edited)


def _is_transpose_producing(node: list[wire.Field], output: str) -> bool:
    return wire.string(node, wire.NODE_OP_TYPE) == "Transpose" and output in wire.strings(node, wire.NODE_OUTPUT)


def _batch_first_perm(attribute_bytes: bytes) -> bytes:
    attribute = wire.fields(attribute_bytes)
    perm = wire.ints(attribute, wire.ATTRIBUTE_INTS)
    if wire.string(attribute, wire.ATTRIBUTE_NAME) != "perm" or perm != _SEQUENCE_FIRST:
        raise ValueError("the Transpose before the LSTM is not perm=[0, 2, 1]")
    kept = [field for field in attribute if field[0] != wire.ATTRIBUTE_INTS]
    return wire.encode(kept + [(wire.ATTRIBUTE_INTS, wire.VARINT, value) for value in _BATCH_FIRST])


def _streams_dim(type_bytes: bytes) -> bytes:
    """[1, 1, 128] -> [1, "streams", 128]: the second dimension of a state becomes the batch."""
    def shape(shape_bytes: bytes) -> bytes:
        fields = wire.fields(shape_bytes)
        dims = [i for i, (number, _, _) in enumerate(fields) if number == wire.SHAPE_DIM]
        if len(dims) != 3:
            raise ValueError("an LSTM state is not three-dimensional")
        streams = wire.encode([(wire.DIM_PARAM, wire.LENGTH_DELIMITED, b"streams")])
        fields[dims[1]] = (wire.SHAPE_DIM, wire.LENGTH_DELIMITED, streams)
        return wire.encode(fields)

    def tensor(tensor_bytes: bytes) -> bytes:
        return wire.encode(wire.edit(wire.fields(tensor_bytes), wire.TENSOR_SHAPE, shape))

    return wire.encode(wire.edit(wire.fields(type_bytes), wire.TYPE_TENSOR, tensor))


def _only(items: Iterable[list[wire.Field]]) -> list[wire.Field]:
    found = list(items)
    if len(found) != 1:
        raise ValueError(f"expected one LSTM, found {len(found)}")
    return found[0]

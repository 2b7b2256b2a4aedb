#!/usr/bin/env python3
"""Write a SparseProx model as ONNX (opset 17) from its PyTorch export.

    sparseprox export --model mlp.safetensors --to torch -o mlp-torch.safetensors
    python3 scripts/export_onnx.py mlp-torch.safetensors -o mlp.onnx

The torch export holds the nn.Sequential state dict ("<module>.weight", "<module>.bias") and,
in its metadata, the architecture (the model JSON), the module list and how the training data
were prepared; this script builds the same network as ONNX operators with the onnx package
(Gemm for nn.Linear, Conv, MaxPool, AveragePool with count_include_pad, Flatten, the
activations), copies the data preparation into the model's metadata_props and checks the
result with onnx.checker. A compacted model (sparseprox export --to compact, then --to torch)
starts with a Gather of the input columns it keeps, so the ONNX model takes the original inputs.
Needs: numpy, onnx, safetensors (PyPI).
"""
import argparse
import json
import sys

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors import safe_open
except ImportError as e:  # pragma: no cover - a message, not a traceback
    sys.exit(f"export_onnx.py: error: {e.name} is not installed (pip install onnx safetensors numpy)")

OPSET = 17
# Entries of the model file's metadata that say how to prepare inputs (sparseprox/model_info.h).
CARRIED = ("data", "task", "loss", "method", "sparseprox_version", "input_columns", "compacted_from")


def pair(v):
    return list(v) if isinstance(v, list) else [v, v]


def build(path):
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "architecture" not in meta:
        raise ValueError(f"{path}: no 'architecture' metadata entry (not a sparseprox torch export?)")
    arch = json.loads(meta["architecture"])
    if "input_shape" in arch:
        c, h, w = arch["input_shape"]
        shape = [c, h, w]
    else:
        shape = [arch["inputs"]]
    nodes, inits = [], []
    current = "input"
    graph_input_shape = ["batch"] + shape
    if "input_columns" in meta:
        cols = json.loads(meta["input_columns"])
        graph_input_shape = ["batch", cols["from"]]
        inits.append(numpy_helper.from_array(np.asarray(cols["keep"], dtype=np.int64), "input_columns"))
        nodes.append(helper.make_node("Gather", ["input", "input_columns"], ["selected"], axis=1))
        current = "selected"
    module = 0
    counter = [0]

    def out_name():
        counter[0] += 1
        return f"t{counter[0]}"

    image = len(shape) == 3
    for layer in arch["layers"]:
        kind = layer["type"]
        if kind == "dense":
            if image:
                o = out_name()
                nodes.append(helper.make_node("Flatten", [current], [o], axis=1))
                current, image = o, False
                module += 1
            w, b = tensors[f"{module}.weight"], tensors[f"{module}.bias"]
            inits += [numpy_helper.from_array(w.astype(np.float32), f"{module}.weight"),
                      numpy_helper.from_array(b.astype(np.float32), f"{module}.bias")]
            o = out_name()
            nodes.append(helper.make_node("Gemm", [current, f"{module}.weight", f"{module}.bias"], [o], transB=1))
            current = o
        elif kind == "conv2d":
            w, b = tensors[f"{module}.weight"], tensors[f"{module}.bias"]
            inits += [numpy_helper.from_array(w.astype(np.float32), f"{module}.weight"),
                      numpy_helper.from_array(b.astype(np.float32), f"{module}.bias")]
            kh, kw = pair(layer["kernel"])
            sh, sw = pair(layer.get("stride", 1))
            ph, pw = pair(layer.get("padding", 0))
            o = out_name()
            nodes.append(helper.make_node("Conv", [current, f"{module}.weight", f"{module}.bias"], [o],
                                          kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw]))
            current = o
        elif kind in ("maxpool2d", "avgpool2d"):
            kh, kw = pair(layer["kernel"])
            sh, sw = pair(layer.get("stride", layer["kernel"]))
            ph, pw = pair(layer.get("padding", 0))
            o = out_name()
            attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
            if kind == "avgpool2d":
                nodes.append(helper.make_node("AveragePool", [current], [o], count_include_pad=1, **attrs))
            else:
                nodes.append(helper.make_node("MaxPool", [current], [o], **attrs))
            current = o
        elif kind == "flatten":
            o = out_name()
            nodes.append(helper.make_node("Flatten", [current], [o], axis=1))
            current, image = o, False
        elif kind == "activation":
            act = layer["activation"]
            o = out_name()
            if act == "relu":
                nodes.append(helper.make_node("Relu", [current], [o]))
            elif act == "leaky_relu":
                nodes.append(helper.make_node("LeakyRelu", [current], [o], alpha=0.01))
            elif act == "tanh":
                nodes.append(helper.make_node("Tanh", [current], [o]))
            elif act == "sigmoid":
                nodes.append(helper.make_node("Sigmoid", [current], [o]))
            else:
                nodes.append(helper.make_node("Identity", [current], [o]))
            current = o
        else:
            raise ValueError(f"{path}: layer type {kind!r} has no ONNX form here")
        module += 1
    nodes.append(helper.make_node("Identity", [current], ["output"]))
    graph = helper.make_graph(
        nodes, "sparseprox",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, graph_input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", None])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sparseprox")
    model.ir_version = 8  # the IR of opset 17, which onnxruntime 1.14 and later read
    helper.set_model_props(model, {k: meta[k] for k in CARRIED if k in meta})
    onnx.checker.check_model(model)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("torch_export", help="a file written by sparseprox export --to torch")
    p.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    a = p.parse_args()
    try:
        model = build(a.torch_export)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"export_onnx.py: error: {e}")
    onnx.save(model, a.out)
    print(f"wrote {a.out} (opset {OPSET}, {len(model.graph.node)} nodes)")


if __name__ == "__main__":
    main()

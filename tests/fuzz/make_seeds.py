#!/usr/bin/env python3
"""Writes the fuzz harnesses' seed corpora (tests/fuzz/corpus/<harness>/): small valid inputs
and a few near misses, so a short run starts deep in each format. Run from the source tree:
    python3 tests/fuzz/make_seeds.py
"""
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- LIBSVM -------------------------------------------------------------------------------------
put("libsvm", "basic.txt", "1 1:0.5 3:-2\n-1 2:1\n")
put("libsvm", "comments.txt", "# a comment\n+1 1:1e-3 2:4   # trailing\r\n\n0.5\n\t2 1:1 2:2 3:3 4:4\n")
put("libsvm", "mg_scale_head.txt",
    "1.13351 1:0.440815 2:-0.0549122 3:-0.313289 4:-0.547627 5:-0.720003 6:-0.805587\n"
    "1.19039 1:0.468516 2:0.0237036 3:-0.214099 4:-0.453009 5:-0.67098 6:-0.777862\n"
    "1.22423 1:0.505587 2:0.105713 3:-0.111094 4:-0.35206 5:-0.607707 6:-0.740063\n")
put("libsvm", "bad_order.txt", "1 2:1 1:1\n")
put("libsvm", "large_index.txt", "3 16777216:1\n")
put("libsvm", "bad_value.txt", "1 1:nan 2:1e40 3:0x1p3\n")

# ---- IDX: [u32 images length][u8 scale][images][labels] ---------------------------------------
def idx_images(count, rows, cols, pixels):
    return struct.pack(">IIII", 0x803, count, rows, cols) + bytes(pixels)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_input(images, labels, scale=1):
    return struct.pack("<I", len(images)) + bytes([scale]) + images + labels


imgs = idx_images(3, 2, 2, [0, 255, 51, 102, 127, 128, 1, 254, 200, 100, 0, 255])
labs = idx_labels([3, 0, 7])
put("idx", "plain", idx_input(imgs, labs, 0))
put("idx", "gzip", idx_input(gzip.compress(imgs, mtime=0), gzip.compress(labs, mtime=0), 1))
put("idx", "raw_scale", idx_input(imgs, labs, 2))
put("idx", "count_mismatch", idx_input(imgs, idx_labels([1, 2]), 1))
put("idx", "truncated", idx_input(imgs[:-3], labs, 1))

# ---- safetensors --------------------------------------------------------------------------------
def safetensors(header, data=b""):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def floats(*v):
    return struct.pack("<%df" % len(v), *v)


arch = json.dumps({"inputs": 3, "layers": [{"type": "dense", "units": 2}, {"type": "activation",
                                           "activation": "relu"}, {"type": "dense", "units": 1}]},
                  separators=(",", ":"))
model_header = {
    "__metadata__": {"format": "sparseprox", "architecture": arch, "lambda": "0.001"},
    "layers.0.bias": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "layers.0.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [8, 32]},
    "layers.1.bias": {"dtype": "F32", "shape": [1], "data_offsets": [32, 36]},
    "layers.1.weight": {"dtype": "F32", "shape": [1, 2], "data_offsets": [36, 44]},
}
put("safetensors", "model.safetensors",
    safetensors(model_header, floats(0.1, -0.2, 0.5, 0, -1.5, 2, 0.25, 0, 0.3, 1, -1)))
put("safetensors", "tensors.safetensors",
    safetensors({"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
                 "b": {"dtype": "F32", "shape": [0, 4], "data_offsets": [4, 4]},
                 "__metadata__": {"note": "x"}}, floats(42)))
conv_arch = json.dumps({"input_shape": [1, 4, 4], "layers": [
    {"type": "conv2d", "filters": 1, "kernel": 3, "stride": 1, "padding": 1},
    {"type": "maxpool2d", "kernel": 2}, {"type": "flatten"}, {"type": "dense", "units": 1}]},
    separators=(",", ":"))
conv_header = {
    "__metadata__": {"format": "sparseprox", "architecture": conv_arch},
    "layers.0.bias": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    "layers.0.weight": {"dtype": "F32", "shape": [1, 1, 3, 3], "data_offsets": [4, 40]},
    "layers.1.bias": {"dtype": "F32", "shape": [1], "data_offsets": [40, 44]},
    "layers.1.weight": {"dtype": "F32", "shape": [1, 4], "data_offsets": [44, 60]},
}
put("safetensors", "conv.safetensors", safetensors(conv_header, floats(*([0.5] * 15))))

# ---- model JSON ---------------------------------------------------------------------------------
put("model_json", "dense.json", arch)
put("model_json", "conv.json", conv_arch)
put("model_json", "cnn8.json", json.dumps({"input_shape": [1, 28, 28], "layers": [
    {"type": "conv2d", "filters": 32, "kernel": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "conv2d", "filters": 64, "kernel": 3, "padding": 1, "activation": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 512, "activation": "relu"},
    {"type": "dense", "units": 10}]}))
put("model_json", "pairs.json", json.dumps({"input_shape": [3, 9, 7], "layers": [
    {"type": "conv2d", "filters": 4, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0],
     "activation": "tanh"},
    {"type": "avgpool2d", "kernel": [2, 2], "padding": 1},
    {"type": "dense", "units": 3, "activation": "leaky_relu"}, {"type": "dense", "units": 2}]}))
put("model_json", "short.txt", "dense:6-128-128-64-1")
put("model_json", "short_tanh.txt", "dense:784-300-100-10:tanh")

#!/usr/bin/env python3
"""Pictures of sparse models: NNZ per layer, and the first layer's surviving kernels.

    python3 scripts/plot_model.py nnz REPORT.json [REPORT.json ...] -o nnz.png [--labels A,B]
    python3 scripts/plot_model.py kernels MODEL.safetensors -o kernels.png [--layer 0]

`nnz` draws one group of bars per weight layer (one bar per report, log scale) with the layer's
weight count and, when the report has per-layer targets, the targets. `kernels` draws the
weights of one layer of a model saved by `sparseprox train|search --save`: a conv layer
(out x in x kh x kw) as its kernels that kept at least one nonzero weight, a dense layer whose
input is a square image (e.g. 784 = 28 x 28) as one image per output unit that kept any weight.
Exact zeros are drawn grey. Needs matplotlib and numpy (Debian: python3-matplotlib).
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile


def fail(msg):
    sys.exit(f"plot_model: {msg}")


def save(fig, path):
    out_dir = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out_dir)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)  # an interrupted run leaves no half-written picture
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {path}")


def read_safetensors(path):
    import numpy as np

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    if len(raw) < 8:
        fail(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        fail(f"{path}: header length {n} runs past the end of the file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except json.JSONDecodeError as e:
        fail(f"{path}: header is not JSON: {e}")
    data = raw[8 + n :]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t.get("dtype") != "F32":
            fail(f"{path}: tensor {name} has dtype {t.get('dtype')}, expected F32")
        b, e = t["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4")
        if arr.size != math.prod(t["shape"]):
            fail(f"{path}: tensor {name} holds {arr.size} floats for shape {t['shape']}")
        tensors[name] = arr.reshape(t["shape"])
    return tensors, header.get("__metadata__", {})


def plot_nnz(args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = []
    for p in args.inputs:
        try:
            with open(p, encoding="utf-8") as f:
                reports.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            fail(f"cannot read {p}: {e}")
    labels = args.labels.split(",") if args.labels else [os.path.splitext(os.path.basename(p))[0] for p in args.inputs]
    if len(labels) != len(reports):
        fail(f"--labels has {len(labels)} names for {len(reports)} reports")
    layers = reports[0]["layers"]
    for r, p in zip(reports, args.inputs):
        if [l["n_weights"] for l in r["layers"]] != [l["n_weights"] for l in layers]:
            fail(f"{p} describes another network than {args.inputs[0]}")
    n_layers, n_rep = len(layers), len(reports)
    width = 0.8 / (n_rep + 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * n_layers + 2), 4.5))
    xs = range(n_layers)
    ax.bar([x - 0.4 + width / 2 for x in xs], [l["n_weights"] for l in layers], width, color="none",
           edgecolor="grey", label="weights")
    for k, (r, lab) in enumerate(zip(reports, labels)):
        nnz = [max(l["nnz"], 0.8) for l in r["layers"]]
        bars = ax.bar([x - 0.4 + width * (k + 1.5) for x in xs], nnz, width, label=lab)
        for b, l in zip(bars, r["layers"]):
            ax.annotate(f"{l['nnz']:,}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=7, rotation=90)
        targets = r.get("target_nnz") or []
        if len(targets) == n_layers:
            for x, t in zip(xs, targets):
                ax.hlines(t, x - 0.4, x + 0.4, colors=f"C{k}", linestyles="--", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{l['name']}\n{'×'.join(map(str, l.get('shape', [])))}" for l in layers], fontsize=8)
    ax.set_ylabel("nonzero weights")
    ax.legend(fontsize=8)
    ax.set_title(args.title or f"NNZ per layer — {reports[0].get('model', '')}", fontsize=10)
    fig.tight_layout()
    save(fig, args.output)


def plot_kernels(args):
    import numpy as np
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tensors, _ = read_safetensors(args.inputs[0])
    name = f"layers.{args.layer}.weight"
    if name not in tensors:
        fail(f"{args.inputs[0]} has no tensor {name}")
    w = tensors[name]
    if w.ndim == 4:
        out, cin, kh, kw = w.shape
        images = [w[o, c] for o in range(out) for c in range(cin)]
        what = f"conv kernels {kh}×{kw}"
    elif w.ndim == 2 and int(math.isqrt(w.shape[1])) ** 2 == w.shape[1]:
        side = math.isqrt(w.shape[1])
        images = [w[o].reshape(side, side) for o in range(w.shape[0])]
        what = f"input weights of dense units as {side}×{side} images"
    else:
        fail(f"{name} has shape {list(w.shape)}: neither a conv kernel nor a dense layer over a square image")
    alive = [im for im in images if np.any(im != 0)]
    total_nz = int(np.count_nonzero(w))
    if not alive:
        fail(f"{name} has no nonzero weight left")
    cols = min(len(alive), args.columns)
    rows = math.ceil(len(alive) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 0.5, 1.1 * rows + 0.9), squeeze=False)
    lim = max(float(np.max(np.abs(im))) for im in alive)
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("lightgrey")
    for ax in axes.flat:
        ax.axis("off")
    for ax, im in zip(axes.flat, alive):
        ax.imshow(np.ma.masked_equal(im, 0.0), cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    fig.suptitle(args.title or f"{name}: {len(alive)} of {len(images)} {what} keep a weight; "
                 f"{total_nz:,} of {w.size:,} weights nonzero (grey = 0)", fontsize=9)
    fig.tight_layout()
    save(fig, args.output)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["nnz", "kernels"])
    ap.add_argument("inputs", nargs="+", help="reports (nnz) or one safetensors model (kernels)")
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--labels", help="nnz: comma-separated names of the reports")
    ap.add_argument("--layer", type=int, default=0, help="kernels: the weight layer (default 0)")
    ap.add_argument("--columns", type=int, default=16, help="kernels: images per row")
    ap.add_argument("--title")
    args = ap.parse_args()
    if args.what == "kernels" and len(args.inputs) != 1:
        fail("kernels takes one model file")
    plot_nnz(args) if args.what == "nnz" else plot_kernels(args)


if __name__ == "__main__":
    main()

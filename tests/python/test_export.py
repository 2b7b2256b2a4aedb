#!/usr/bin/env python3
"""The exports against the command line's own predictions.

For a sparse convolutional model and a sparse MLP with dead units (written here as SparseProx
model files), on random inputs given as .npy:
  - predict --format dense|csr|compact give the same outputs;
  - export --to torch: the keys, shapes and module list of nn.Sequential's layout; loaded into
    the printed nn.Sequential (where PyTorch is installed), the CLI's outputs;
  - scripts/export_onnx.py on it: run by onnxruntime, the CLI's outputs;
  - export --to csr: the arrays rebuild the dense weights;
  - export --to compact: a model file giving the same outputs, with fewer weights.
Exit 77 (skipped) when numpy or safetensors is missing; the ONNX and PyTorch parts skip with a
message when their packages are missing.

    test_export.py --cli build/sparseprox --repo .
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file
except ImportError as e:
    print(f"SKIPPED: {e.name} is not installed (numpy and safetensors are needed)")
    sys.exit(SKIP)

CONV = {"input_shape": [1, 10, 10], "layers": [
    {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 1, "padding": 1},
    {"type": "activation", "activation": "relu"},
    {"type": "maxpool2d", "kernel": 2, "stride": 2, "padding": 0},
    {"type": "conv2d", "filters": 6, "kernel": 3, "stride": 1, "padding": 0},
    {"type": "activation", "activation": "tanh"},
    {"type": "avgpool2d", "kernel": 3, "stride": 3, "padding": 0},
    {"type": "dense", "units": 5}]}
# nn.Sequential: the dense layer after an image gets an nn.Flatten (index 6) first.
CONV_MODULES = ["nn.Conv2d", "nn.ReLU", "nn.MaxPool2d", "nn.Conv2d", "nn.Tanh", "nn.AvgPool2d", "nn.Flatten",
                "nn.Linear"]
CONV_KEYS = {"0.weight": (4, 1, 3, 3), "0.bias": (4,), "3.weight": (6, 4, 3, 3), "3.bias": (6,),
             "7.weight": (5, 6), "7.bias": (5,)}
MLP = {"inputs": 12, "layers": [
    {"type": "dense", "units": 9}, {"type": "activation", "activation": "relu"},
    {"type": "dense", "units": 7}, {"type": "activation", "activation": "relu"},
    {"type": "dense", "units": 3}]}
MLP_KEYS = {"0.weight": (9, 12), "0.bias": (9,), "2.weight": (7, 9), "2.bias": (7,), "4.weight": (3, 7),
            "4.bias": (3,)}


def run(cli, *args):
    r = subprocess.run([cli, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"sparseprox {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def write_model(path, arch, rng, dead):
    tensors, i = {}, 0
    shape = arch.get("input_shape", [arch.get("inputs"), 1, 1])
    c, h, w = shape
    for layer in arch["layers"]:
        t = layer["type"]
        if t == "conv2d":
            k, p, s = layer["kernel"], layer["padding"], layer["stride"]
            wt = rng.uniform(-0.5, 0.5, (layer["filters"], c, k, k)).astype(np.float32)
            c, h, w = layer["filters"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif t == "dense":
            wt = rng.uniform(-0.5, 0.5, (layer["units"], c * h * w)).astype(np.float32)
            c, h, w = layer["units"], 1, 1
        elif t in ("maxpool2d", "avgpool2d"):
            k, s = layer["kernel"], layer["stride"]
            h, w = (h - k) // s + 1, (w - k) // s + 1
            continue
        else:
            continue
        wt[rng.uniform(size=wt.shape) < 0.5] = 0.0
        dead(i, wt)
        tensors[f"layers.{i}.weight"] = wt
        tensors[f"layers.{i}.bias"] = rng.uniform(-0.5, 0.5, wt.shape[0]).astype(np.float32)
        i += 1
    save_file(tensors, path, metadata={"format": "sparseprox", "architecture": json.dumps(arch)})


def read(path):
    with safe_open(path, framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def predict(cli, model, x_path, out, fmt):
    run(cli, "predict", "--model", model, "--data", x_path, "--out", out, "--format", fmt, "--batch", "7", "-q")
    return np.load(out)


def check_model(cli, repo, tmp, name, arch, keys, modules, dead, x):
    rng = np.random.default_rng(3)
    model = os.path.join(tmp, f"{name}.safetensors")
    write_model(model, arch, rng, dead)
    x_path = os.path.join(tmp, f"{name}-x.npy")
    np.save(x_path, x)
    y = predict(cli, model, x_path, os.path.join(tmp, f"{name}-dense.npy"), "dense")
    assert np.abs(y).max() > 0
    for fmt in ("csr", "compact"):
        yf = predict(cli, model, x_path, os.path.join(tmp, f"{name}-{fmt}.npy"), fmt)
        np.testing.assert_allclose(yf, y, rtol=1e-4, atol=1e-5, err_msg=f"{name} --format {fmt}")

    # torch: nn.Sequential's keys and shapes, the module list in the metadata and the .py.
    torch_file = os.path.join(tmp, f"{name}-torch.safetensors")
    run(cli, "export", "--model", model, "--to", "torch", "-o", torch_file, "-q")
    tensors, meta = read(torch_file)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == keys, tensors.keys()
    assert [m.split("(")[0] for m in json.loads(meta["modules"])] == modules, meta["modules"]
    py = torch_file[: -len(".safetensors")] + ".py"
    assert os.path.exists(py)
    if importlib.util.find_spec("torch"):
        import torch
        from safetensors.torch import load_file
        spec = importlib.util.spec_from_file_location(f"{name}_torch", py)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        net = mod.build()
        net.load_state_dict(load_file(torch_file))
        with torch.no_grad():
            yt = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(yt, y, rtol=1e-4, atol=1e-5, err_msg=f"{name} torch")
        print(f"{name}: torch nn.Sequential matches")
    else:
        print(f"{name}: torch part SKIPPED (PyTorch is not installed)")

    # onnx through the script, run by onnxruntime.
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime"):
        import onnx
        import onnxruntime as ort
        onnx_file = os.path.join(tmp, f"{name}.onnx")
        subprocess.run([sys.executable, os.path.join(repo, "scripts", "export_onnx.py"), torch_file, "-o", onnx_file],
                       check=True, capture_output=True)
        m = onnx.load(onnx_file)
        assert m.opset_import[0].version >= 17
        sess = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
        yo = sess.run(None, {"input": x})[0]
        np.testing.assert_allclose(yo, y, rtol=1e-4, atol=1e-5, err_msg=f"{name} onnx")
        print(f"{name}: onnxruntime matches")
    else:
        print(f"{name}: ONNX part SKIPPED (onnx or onnxruntime is not installed)")

    # csr: the arrays rebuild the weights.
    csr_file = os.path.join(tmp, f"{name}-csr.safetensors")
    run(cli, "export", "--model", model, "--to", "csr", "-o", csr_file, "-q")
    csr, cmeta = read(csr_file)
    dense, _ = read(model)
    for i in range(len([k for k in dense if k.endswith(".weight")])):
        w = dense[f"layers.{i}.weight"]
        rows, cols = json.loads(cmeta[f"layers.{i}.shape"])
        crow, col, val = csr[f"layers.{i}.crow_indices"], csr[f"layers.{i}.col_indices"], csr[f"layers.{i}.values"]
        assert crow.dtype == np.int64 and col.dtype == np.int64
        rebuilt = np.zeros((rows, cols), np.float32)
        for r in range(rows):
            rebuilt[r, col[crow[r]:crow[r + 1]]] = val[crow[r]:crow[r + 1]]
        np.testing.assert_array_equal(rebuilt.reshape(w.shape), w)
        np.testing.assert_array_equal(csr[f"layers.{i}.bias"], dense[f"layers.{i}.bias"])
        assert np.count_nonzero(val) == len(val)

    # compact: a smaller model file with the same outputs (also through ONNX's input Gather).
    compact_file = os.path.join(tmp, f"{name}-compact.safetensors")
    report = os.path.join(tmp, f"{name}-compact.json")
    run(cli, "export", "--model", model, "--to", "compact", "-o", compact_file, "--report", report, "-q")
    rep = json.load(open(report))
    assert rep["weights_after"] < rep["weights_before"], rep
    yc = predict(cli, compact_file, x_path, os.path.join(tmp, f"{name}-compact-out.npy"), "dense")
    np.testing.assert_allclose(yc, y, rtol=1e-4, atol=1e-5, err_msg=f"{name} compact file")
    print(f"{name}: compact {rep['weights_before']} -> {rep['weights_after']} weights, outputs match")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cli", required=True)
    p.add_argument("--repo", required=True)
    a = p.parse_args()
    rng = np.random.default_rng(5)

    def conv_dead(i, w):
        if i == 1:
            w[2] = 0.0          # filter 2 of the second conv: no incoming weight (folded)
        if i == 2:
            w[:, 3 * 1:4 * 1] = 0.0  # the dense layer reads nothing of channel 3

    def mlp_dead(i, w):
        if i == 0:
            w[:, [0, 5]] = 0.0  # inputs 0 and 5 unused
            w[4] = 0.0          # unit 4: constant
        if i == 1:
            w[:, 6] = 0.0       # unit 6 of the first layer is read by nothing

    with tempfile.TemporaryDirectory() as tmp:
        check_model(a.cli, a.repo, tmp, "conv", CONV, CONV_KEYS, CONV_MODULES, conv_dead,
                    rng.uniform(0, 1, (11, 1, 10, 10)).astype(np.float32))
        check_model(a.cli, a.repo, tmp, "mlp", MLP, MLP_KEYS, ["nn.Linear", "nn.ReLU", "nn.Linear", "nn.ReLU", "nn.Linear"],
                    mlp_dead, rng.uniform(-1, 1, (13, 12)).astype(np.float32))
    print("export tests passed")


if __name__ == "__main__":
    main()

"""The Python package against the library and the command line."""

import copy
import json
import os
import signal
import subprocess

import numpy as np
import pytest

import sparseprox


def run_cli(cli, args, tmp_path, name="report.json", ok=(0,)):
    report = tmp_path / name
    proc = subprocess.run([cli, *args, "--device", "cpu", "-q", "--report", str(report)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in ok, proc.stdout + proc.stderr
    return json.loads(report.read_text())


def same_layers(a, b):
    """The weights and biases of two models, bitwise."""
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.weight, lb.weight)
        np.testing.assert_array_equal(la.bias, lb.bias)


# ---- models -------------------------------------------------------------------------------------

def test_version_and_devices():
    assert sparseprox.__version__.count(".") == 2
    assert "cpu" in sparseprox.describe_device("cpu")
    assert sparseprox.cuda_device_count() >= 0
    assert "lenet300100" in sparseprox.preset_names()


def test_model_from_spec_is_seeded_and_shaped():
    m = sparseprox.Model("dense:6-16-1")
    assert m.n_inputs == 6 and m.n_outputs == 1 and m.n_weights == 6 * 16 + 16
    shapes = [l.weight.shape for l in m.layers]
    assert shapes == [(16, 6), (1, 16)]
    assert [l.bias.shape for l in m.layers] == [(16,), (1,)]
    assert m.nnz == m.n_weights  # U(-1/sqrt(fan_in), ...) has no exact zero here
    bound = 1 / np.sqrt(6)
    assert np.all(np.abs(m.layers[0].weight) <= bound) and np.any(m.layers[0].weight != 0)
    same_layers(m, sparseprox.Model("dense:6-16-1", seed=0))
    other = sparseprox.Model("dense:6-16-1", seed=1)
    assert not np.array_equal(m.layers[0].weight, other.layers[0].weight)
    lenet = sparseprox.Model("lenet5")
    assert lenet.input_shape == (1, 28, 28)
    assert [l.kind for l in lenet.layers] == ["conv2d", "conv2d", "dense", "dense"]
    assert lenet.layers[0].weight.shape == (20, 1, 5, 5)


def test_layer_arrays_are_views_into_the_model():
    m = sparseprox.Model("dense:6-16-1")
    w = m.layers[0].weight
    assert w.dtype == np.float32 and w.flags["C_CONTIGUOUS"] and w.flags["WRITEABLE"]
    assert np.shares_memory(w, m.layers[0].weight)  # the same memory each time: no copy
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6)
    before = m.predict(x)
    w[:, :3] = 0.0  # writing the view prunes the model itself
    assert m.nnz == m.n_weights - 16 * 3
    assert m.layers[0].nnz == 16 * 3
    assert not np.array_equal(before, m.predict(x))
    b = m.layers[1].bias
    b[0] = 5.0
    assert m.layers[1].bias[0] == 5.0
    # A view keeps its model alive.
    del m
    assert w[0, 0] == 0.0 and b[0] == 5.0


def test_copy_is_independent():
    m = sparseprox.Model("dense:6-16-1")
    c = copy.deepcopy(m)
    c.layers[0].weight[:] = 0
    assert m.nnz == m.n_weights and c.nnz == 16


def test_save_and_load(tmp_path):
    m = sparseprox.Model("dense:6-16-1:tanh", seed=3)
    m.layers[0].weight[0, :] = 0
    path = tmp_path / "m.safetensors"
    m.save(str(path), {"note": "test"})
    loaded = sparseprox.Model(str(path))
    assert loaded.spec == m.spec and loaded.nnz == m.nnz
    same_layers(m, loaded)
    again, meta = sparseprox.Model.load(str(path))
    assert meta["note"] == "test" and meta["format"] == "sparseprox"
    same_layers(m, again)


def test_predict_matches_numpy_forward():
    m = sparseprox.Model("dense:6-16-1", seed=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((19, 6)).astype(np.float32)
    w0, b0 = m.layers[0].weight.astype(np.float64), m.layers[0].bias.astype(np.float64)
    w1, b1 = m.layers[1].weight.astype(np.float64), m.layers[1].bias.astype(np.float64)
    ref = np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    out = m.predict(x)
    assert out.shape == (19, 1) and out.dtype == np.float32
    assert np.any(out != 0)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


# ---- inputs -------------------------------------------------------------------------------------

def test_mackey_glass_arrays(mg):
    (X, y), (Xt, yt) = mg
    assert X.shape == (1000, 6) and y.shape == (1000,) and Xt.shape == (385, 6) and yt.shape == (385,)
    assert X.dtype == np.float32 and y.dtype == np.float32
    # Windows slide by one sample: each target is the last feature of the next row.
    np.testing.assert_array_equal(y[:-1], X[1:, -1])
    assert X.min() >= -1 and X.max() <= 1


def small_train(X, y, **kw):
    args = dict(steps=60, lam=1e-3, device="cpu")
    args.update(kw)
    return sparseprox.train("dense:6-16-1", X, y, **args)


def test_dtypes_and_memory_orders_give_the_same_run(mg):
    (X, y), _ = mg
    ref = small_train(X, y)
    variants = {
        "float64": (X.astype(np.float64), y.astype(np.float64)),
        "fortran": (np.asfortranarray(X), y),
        "strided": (np.repeat(X, 2, axis=1)[:, ::2], np.stack([y, y], axis=1)[:, 0]),
        "column y": (X, y.reshape(-1, 1)),
        "list": (X.tolist(), y.tolist()),
    }
    for name, (Xv, yv) in variants.items():
        r = small_train(Xv, yv)
        assert r.report["train_loss"] == ref.report["train_loss"], name
        same_layers(r.model, ref.model)


def test_torch_tensors_are_accepted(mg):
    torch = pytest.importorskip("torch")
    (X, y), _ = mg
    ref = small_train(X, y)
    r = small_train(torch.from_numpy(X), torch.from_numpy(y))
    same_layers(r.model, ref.model)
    out = ref.model.predict(torch.from_numpy(X[:5]))
    np.testing.assert_array_equal(out, ref.model.predict(X[:5]))


def test_wrong_dtypes_are_refused(mg, blobs):
    (X, y), _ = mg
    with pytest.raises(TypeError, match=r"X: dtype int64 is not supported \(give float32 or float64\)"):
        small_train(np.zeros((10, 6), dtype=np.int64), y[:10])
    with pytest.raises(TypeError, match="X: dtype float16"):
        small_train(X.astype(np.float16), y)
    with pytest.raises(TypeError, match="y: dtype bool"):
        small_train(X, y > 0)
    with pytest.raises(TypeError, match="X: dtype complex"):
        small_train(X.astype(np.complex64), y)


def test_wrong_shapes_are_refused(mg, blobs):
    (X, y), _ = mg
    with pytest.raises(ValueError, match=r"X has shape \(1000, 5\): 5 features per row, but the model takes 6"):
        small_train(X[:, :5], y)
    with pytest.raises(ValueError, match=r"X has shape \(6000,\)"):
        small_train(X.ravel(), y)
    with pytest.raises(ValueError, match=r"y has shape \(999,\) but X has 1000 rows"):
        small_train(X, y[:-1])
    with pytest.raises(ValueError, match=r"y holds floats .* shape \(1000, 2\), but the model has 1 outputs"):
        small_train(X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match=r"X has shape \(3, 1, 28, 27\): samples of shape \(1, 28, 27\)"):
        sparseprox.Model("lenet5").predict(np.zeros((3, 1, 28, 27), np.float32))
    with pytest.raises(ValueError, match="test: give a pair"):
        small_train(X, y, test=(X,))
    Xb, yb = blobs
    with pytest.raises(ValueError, match=r"y\[\d+\] = 2 is not a class of the model's 2 outputs"):
        sparseprox.train("dense:4-8-2", Xb, yb, steps=5, device="cpu")
    with pytest.raises(ValueError, match="classification needs one output per class"):
        sparseprox.train("dense:4-8-1", Xb, yb, steps=5, device="cpu")


def test_non_finite_values_are_named(mg):
    (X, y), _ = mg
    Xn = X.copy()
    Xn[17, 4] = np.nan
    with pytest.raises(ValueError, match=r"X\[17, 4\] is NaN: every value must be finite"):
        small_train(Xn, y)
    yn = y.astype(np.float64)
    yn[3] = np.inf
    with pytest.raises(ValueError, match=r"y\[3\] is infinite"):
        small_train(X, yn)
    Xo = X.astype(np.float64)
    Xo[2, 0] = 1e300
    with pytest.raises(ValueError, match=r"X\[2, 0\] = 1e\+300 overflows float32"):
        small_train(Xo, y)
    Xf = np.asfortranarray(Xn)
    with pytest.raises(ValueError, match=r"X\[17, 4\] is NaN"):
        small_train(Xf, y)
    with pytest.raises(ValueError, match=r"X_test\[0, 0\] is NaN"):
        small_train(X, y, test=(np.full((4, 6), np.nan, np.float32), y[:4]))


def test_impossible_settings_raise_the_library_error(mg):
    (X, y), _ = mg
    with pytest.raises(sparseprox.Error, match="exceeds the 112 weights"):
        small_train(X, y, target_nnz=1000)
    with pytest.raises(sparseprox.Error, match="target NNZ 0 is impossible"):
        sparseprox.search("dense:6-16-1", X, y, target_nnz=0, steps=10, device="cpu")
    with pytest.raises(ValueError, match="give target_nnz or target_density, not both"):
        sparseprox.search("dense:6-16-1", X, y, target_nnz=10, target_density=0.1, steps=10, device="cpu")
    with pytest.raises(ValueError, match="a search needs a target"):
        sparseprox.search("dense:6-16-1", X, y, steps=10, device="cpu")
    with pytest.raises(sparseprox.Error, match=r"target_density: 1\.5 is outside \(0, 1\]"):
        sparseprox.search("dense:6-16-1", X, y, target_density=1.5, steps=10, device="cpu")
    with pytest.raises(sparseprox.Error, match="batch 5000 is larger than the 1000 training rows"):
        small_train(X, y, batch=5000)
    with pytest.raises(sparseprox.Error, match="unknown optimizer 'adagrad'"):
        small_train(X, y, optimizer="adagrad")
    with pytest.raises(sparseprox.Error):
        small_train(X, y, lr=-1.0)
    with pytest.raises(ValueError, match="steps: -3 is not a whole number"):
        small_train(X, y, steps=-3)
    with pytest.raises(sparseprox.Error):
        sparseprox.Model("dense:6-x-1")
    with pytest.raises(sparseprox.Error, match="missing.safetensors"):
        sparseprox.Model("missing.safetensors")
    # The library's error is both a ValueError and a RuntimeError.
    assert issubclass(sparseprox.Error, ValueError) and issubclass(sparseprox.Error, RuntimeError)


def test_l1_form_is_checked_and_reported(mg):
    (X, y), _ = mg
    with pytest.raises(sparseprox.Error, match="unknown l1 form 'eager'"):
        small_train(X, y, l1_form="eager")
    with pytest.raises(sparseprox.Error, match="l1_form applies to method='l1' only"):
        small_train(X, y, method="gmp", target_nnz=50, l1_form="lazy")
    assert small_train(X, y).report["method_options"]["form"] == "greedy"
    assert small_train(X, y, l1_form="lazy").report["method_options"]["form"] == "lazy"
    r = sparseprox.search("dense:6-16-1", X, y, target_nnz=40, tolerance=0.1, steps=200, device="cpu")
    assert r.report["strategy"] == "adaptive" and r.report["method_options"]["form"] == "lazy"


def test_divergence_raises_with_the_report(mg):
    (X, y), _ = mg
    with pytest.raises(sparseprox.DivergedError, match="training diverged.*try a smaller lr") as info:
        small_train(X, y * 1e18, lr=1e6, steps=200)
    assert info.value.report["diverged"] is True
    assert info.value.last_step >= info.value.first_step >= 1


# ---- training and search ------------------------------------------------------------------------

def test_train_regression_report(mg):
    (X, y), test = mg
    r = sparseprox.train("dense:6-32-1", X, y, test=test, lam=3e-3, steps=400, device="cpu")
    rep = r.report
    for key in ("device", "data", "data_preparation", "train_rows", "test_rows", "model", "loss", "lr", "batch", "seed", "optimizer",
                "lr_schedule", "method", "layers", "nnz_total", "n_weights_total", "target_nnz", "tolerance",
                "train_loss", "test_loss", "train_accuracy", "test_accuracy", "steps", "finetune_steps",
                "epochs_started", "stopped_in_band", "wall_seconds", "samples_per_second", "diverged"):
        assert key in rep, key
    assert rep["steps"] == 400 and rep["batch"] == "full" and rep["loss"] == "mse"
    assert rep["lr"] == 0.1 and rep["layers"][0]["lambda"] == 3e-3  # float settings as their shortest decimal
    assert rep["data_preparation"]["task"] == "regression"
    assert rep["train_rows"] == 1000 and rep["test_rows"] == 385
    assert 0 < r.model.nnz < r.model.n_weights and rep["nnz_total"] == r.model.nnz
    assert [l["nnz"] for l in rep["layers"]] == r.model.nnz_per_layer
    assert rep["test_accuracy"] is None and rep["test_loss"] > 0
    ev = sparseprox.evaluate(r.model, *test)
    assert ev["accuracy"] is None
    assert ev["loss"] == pytest.approx(rep["test_loss"], rel=1e-6)


def test_train_classification(blobs):
    X, y = blobs
    r = sparseprox.train("dense:4-8-3", X, y, test=(X, y), lam=1e-3, lr=0.5, epochs=30, batch=32, device="cpu")
    assert r.report["loss"] == "cross_entropy" and r.report["batch"] == 32
    assert r.report["test_accuracy"] > 0.95
    pred = r.model.predict(X).argmax(axis=1)
    assert np.mean(pred == y) == pytest.approx(r.report["test_accuracy"])


def test_train_stops_in_band(mg):
    (X, y), _ = mg
    r = sparseprox.train("dense:6-32-1", X, y, lam=3e-2, steps=3000, target_nnz=100, tolerance=0.1, device="cpu")
    assert r.report["stopped_in_band"] and abs(r.model.nnz - 100) <= 10
    assert r.report["steps"] < 3000


def test_train_matches_cli(mg, cli, tmp_path):
    (X, y), test = mg
    flags = ["--model", "dense:6-32-1", "--lambda", "1e-3", "--steps", "300", "--seed", "5", "--lr", "0.05"]
    saved = tmp_path / "cli.safetensors"
    rep = run_cli(cli, ["train", *flags, "--save", str(saved)], tmp_path)
    r = sparseprox.train("dense:6-32-1", X, y, test=test, lam=1e-3, steps=300, seed=5, lr=0.05, device="cpu")
    for key in ("nnz_total", "train_loss", "test_loss", "steps", "model", "lr", "batch", "seed", "loss", "optimizer",
                "lr_schedule", "method", "n_weights_total", "finetune_lr", "train_rows", "test_rows"):
        assert r.report[key] == rep[key], key
    assert [l["nnz"] for l in r.report["layers"]] == [l["nnz"] for l in rep["layers"]]
    assert [l["lambda"] for l in r.report["layers"]] == [l["lambda"] for l in rep["layers"]]
    same_layers(r.model, sparseprox.Model(str(saved)))


def test_search_matches_cli_on_mackey_glass(mg, cli, tmp_path):
    (X, y), test = mg
    flags = ["--model", "dense:6-32-1", "--target-nnz", "60", "--tolerance", "0.05", "--steps", "800"]
    rep = run_cli(cli, ["search", *flags], tmp_path, ok=(0, 3))
    r = sparseprox.search("dense:6-32-1", X, y, test=test, target_nnz=60, tolerance=0.05, steps=800, device="cpu")
    for key in ("reached", "lambda_final", "lambda_start", "nnz_total", "train_loss", "test_loss", "outer_iterations",
                "total_steps", "best_iteration", "strategy", "target_nnz", "finetune", "lambda_start_rows"):
        assert r.report[key] == rep[key], key
    assert [it["nnz"] for it in r.report["search"]] == [it["nnz"] for it in rep["search"]]
    assert [it["lambda"] for it in r.report["search"]] == [it["lambda"] for it in rep["search"]]
    assert r.reached and abs(r.model.nnz - 60) <= 3


def test_paper_search_bisect_switch_matches_cli(mg, cli, tmp_path):
    (X, y), test = mg
    flags = ["--model", "dense:6-16-1", "--target-nnz", "40", "--tolerance", "0.02", "--steps", "200",
             "--strategy", "paper", "--max-outer", "8"]
    for bisect in (True, False):
        rep = run_cli(cli, ["search", *flags] + ([] if bisect else ["--no-bisect-stalls"]), tmp_path, ok=(0, 3))
        r = sparseprox.search("dense:6-16-1", X, y, test=test, target_nnz=40, tolerance=0.02, steps=200,
                              strategy="paper", max_outer=8, bisect_stalls=bisect, device="cpu")
        assert rep["bisect_stalls"] is bisect and r.report["bisect_stalls"] is bisect
        assert [(it["rule"], it["lambda"], it["nnz"]) for it in r.report["search"]] == \
            [(it["rule"], it["lambda"], it["nnz"]) for it in rep["search"]]
        if not bisect:
            assert "bisect" not in [it["rule"] for it in r.report["search"]]


def test_adaptive_search(mg):
    (X, y), test = mg
    r = sparseprox.search("dense:6-32-1", X, y, test=test, target_density=0.3, tolerance=0.02,
                          strategy="adaptive", steps=2000, adapt_interval=100, device="cpu")
    assert r.report["strategy"] == "adaptive" and r.report["adapt_interval"] == 100
    target = r.report["target_nnz"][0]
    assert target == round(0.3 * 224)
    assert r.reached and abs(r.model.nnz - target) <= 0.02 * target
    assert len(r.report["search"]) >= 2
    assert r.report["lambda_start_rows"] == len(X)
    few = sparseprox.search("dense:6-32-1", X, y, target_density=0.3, tolerance=0.02, strategy="adaptive",
                            steps=50, start_rows=100, device="cpu")
    assert few.report["lambda_start_rows"] == 100
    assert few.report["lambda_start"] != r.report["lambda_start"]


def write_idx(folder, prefix, images, labels):
    """images (n, 28, 28) uint8 and labels (n,) as the IDX files of an MNIST folder."""
    n = len(images)
    with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(np.array([0x803, n, 28, 28], dtype=">u4").tobytes() + images.astype(np.uint8).tobytes())
    with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(np.array([0x801, n], dtype=">u4").tobytes() + labels.astype(np.uint8).tobytes())


def test_search_mnist_matches_cli(mnist_dir, cli, tmp_path):
    """The first 10,000 training and 2,000 test images of MNIST (a folder of IDX files the
    command line reads too, to keep the test short), a 5%-dense 784-64-10 MLP."""
    (Xr, yr), (Xtr, ytr) = sparseprox.load_idx(str(mnist_dir), pixel_scale="raw")
    assert Xr.shape == (60000, 784) and yr.dtype == np.int64 and Xtr.shape == (10000, 784)
    sub = tmp_path / "mnist-small"
    sub.mkdir()
    write_idx(sub, "train", Xr[:10000].reshape(-1, 28, 28), yr[:10000])
    write_idx(sub, "t10k", Xtr[:2000].reshape(-1, 28, 28), ytr[:2000])
    (X, y), test = sparseprox.load_idx(str(sub))  # symmetric [-1, 1], as the command line's default
    np.testing.assert_array_equal(X, (Xr[:10000].astype(np.float64) / 127.5 - 1.0).astype(np.float32))

    model, density, tol, steps, lr = "dense:784-64-10", 0.05, 0.02, 400, 0.1
    rep = run_cli(cli, ["search", "--data", f"idx:{sub}", "--model", model, "--target-density", str(density),
                        "--tolerance", str(tol), "--steps", str(steps), "--lr", str(lr)], tmp_path, ok=(0, 3))
    r = sparseprox.search(model, X, y, test=test, target_density=density, tolerance=tol, steps=steps, lr=lr,
                          device="cpu")
    target = round(density * (784 * 64 + 64 * 10))
    assert r.report["target_nnz"] == [target] == rep["target_nnz"]
    assert r.reached and abs(r.model.nnz - target) <= tol * target
    for key in ("reached", "lambda_final", "nnz_total", "test_accuracy", "test_loss", "train_loss",
                "outer_iterations", "total_steps"):
        assert r.report[key] == rep[key], key
    assert [l["nnz"] for l in r.report["layers"]] == [l["nnz"] for l in rep["layers"]]
    assert r.report["test_accuracy"] > 0.5  # chance is 0.1; 400 steps a run at 5% density
    acc = np.mean(r.model.predict(test[0]).argmax(axis=1) == test[1])
    assert acc == pytest.approx(r.report["test_accuracy"])


# ---- progress and Ctrl-C ------------------------------------------------------------------------

def test_progress_callback_receives_dicts(mg):
    (X, y), _ = mg
    events = []
    small_train(X, y, steps=2000, progress=events.append, progress_seconds=1e-6)
    assert events, "no progress reported"
    e = events[-1]
    assert e["event"] == "progress" and set(e) >= {"epoch", "step", "loss", "nnz", "nnz_per_layer", "density",
                                                    "samples_per_second", "seconds"}
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and steps[-1] <= 2000


def test_search_progress_reports_iterations(mg):
    (X, y), _ = mg
    events = []
    sparseprox.search("dense:6-16-1", X, y, target_nnz=30, tolerance=0.1, steps=300, device="cpu",
                      progress=events.append)
    its = [e for e in events if e["event"] == "iteration"]
    assert its and its[0]["iteration"] == 0 and "lambda" in its[0] and "nnz_total" in its[0]


def test_progress_true_prints(mg, capsys):
    (X, y), _ = mg
    small_train(X, y, steps=300, progress=True)
    err = capsys.readouterr().err
    assert "step" in err or "it/s" in err or "%" in err


def test_callback_keyboard_interrupt_stops_the_run(mg):
    (X, y), _ = mg
    seen = []

    def stop(event):
        seen.append(event["step"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small_train(X, y, steps=100000, progress=stop, progress_seconds=1e-6)
    assert len(seen) == 1 and seen[0] < 100000
    # The library is left in a usable state.
    assert small_train(X, y).report["steps"] == 60


def test_callback_error_propagates(mg):
    (X, y), _ = mg

    def fail(event):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        sparseprox.search("dense:6-16-1", X, y, target_nnz=30, steps=100000, device="cpu", progress=fail,
                          progress_seconds=1e-6)


def test_sigint_stops_training(mg):
    """A real SIGINT (as Ctrl-C sends) during a run raises KeyboardInterrupt at the next poll."""
    (X, y), _ = mg
    seen = []

    def interrupt(event):
        seen.append(event["step"])
        if len(seen) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        sparseprox.search("dense:6-16-1", X, y, target_nnz=30, steps=1000000, device="cpu", progress=interrupt,
                          progress_seconds=1e-6)
    assert len(seen) == 1  # raised at the poll after the signal, before the next callback
    with pytest.raises(KeyboardInterrupt):
        # No callback at all: the signal check still runs.
        import threading
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        small_train(X, y, steps=10**8)


# ---- PyTorch --------------------------------------------------------------------------------------

def test_to_torch_dense(mg):
    torch = pytest.importorskip("torch")
    (X, y), (Xt, _) = mg
    r = sparseprox.train("dense:6-32-1:tanh", X, y, lam=1e-3, steps=200, device="cpu")
    net = sparseprox.to_torch(r.model)
    assert isinstance(net, torch.nn.Sequential)
    with torch.no_grad():
        out = net(torch.from_numpy(Xt)).numpy()
    np.testing.assert_allclose(out, r.model.predict(Xt), rtol=1e-5, atol=1e-6)
    assert int((net[0].weight == 0).sum()) == r.model.layers[0].weight.size - r.model.layers[0].nnz


@pytest.mark.parametrize("preset", ["lenet5", "cnn8"])
def test_to_torch_conv(preset):
    torch = pytest.importorskip("torch")
    m = sparseprox.Model(preset, seed=1)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        out = sparseprox.to_torch(m)(torch.from_numpy(x)).numpy()
    ref = m.predict(x)
    assert np.any(ref != 0)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


DATA_PARALLEL_SCRIPT = r'''
import hashlib, json, sys
import numpy as np
import sparseprox
w = sparseprox.world()
(X, y), test = sparseprox.mackey_glass()
r = sparseprox.train("dense:6-32-32-1", X, y, test=test, lam=1e-3, steps=300, batch=100, device="cpu",
                     distributed=True, comm_timeout=60)
slab = b"".join(np.ascontiguousarray(l.weight).tobytes() + np.ascontiguousarray(l.bias).tobytes()
                for l in r.model.layers)
s = sparseprox.search("dense:6-32-32-1", X, y, target_nnz=300, tolerance=0.05, strategy="paper",
                      lambda0=1e-2, lambda1=1e-4, stop_run0=False, finetune=False, steps=200, batch="full",
                      device="cpu", distributed=True)
with open(sys.argv[1] + f".{w['rank']}", "w") as f:
    json.dump({"world": w, "sha": hashlib.sha256(slab).hexdigest(), "nnz": r.model.nnz_per_layer,
               "steps": r.report["steps"], "search_rounds": s.report["rounds"],
               "runs_per_round": s.report["runs_per_round"], "ranks": [it["rank"] for it in s.report["search"]]}, f)
'''


def test_world_is_one_process_without_a_launcher():
    w = sparseprox.world()
    assert w["rank"] == 0 and w["size"] == 1
    with pytest.raises(sparseprox.Error, match="comm_timeout"):
        sparseprox.train("dense:6-8-1", *sparseprox.mackey_glass()[0], steps=5, device="cpu", comm_timeout=5)


def test_data_parallel_under_mpirun(tmp_path):
    """Two processes under mpirun: the same weights on both ranks, the same NNZ as one process
    (same global batch), and a parallel search of two runs per round."""
    import shutil
    import sys
    mpirun = shutil.which("mpirun")
    if not sparseprox.world()["mpi"] or mpirun is None:
        pytest.skip("the library was built without MPI, or mpirun is missing (Debian: openmpi-bin)")
    script = tmp_path / "dp.py"
    script.write_text(DATA_PARALLEL_SCRIPT)
    out = tmp_path / "out"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               SPARSEPROX_NUM_THREADS="1")
    proc = subprocess.run([mpirun, "--oversubscribe", "-np", "2", sys.executable, str(script), str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = [json.loads((tmp_path / f"out.{k}").read_text()) for k in (0, 1)]
    assert [r["world"]["rank"] for r in ranks] == [0, 1]
    assert all(r["world"]["size"] == 2 for r in ranks)
    assert ranks[0]["sha"] == ranks[1]["sha"], "every rank holds the same weights"
    (X, y), test = sparseprox.mackey_glass()
    one = sparseprox.train("dense:6-32-32-1", X, y, test=test, lam=1e-3, steps=300, batch=100, device="cpu")
    assert ranks[0]["steps"] == one.report["steps"]
    for n2, n1 in zip(ranks[0]["nnz"], one.model.nnz_per_layer):
        assert abs(n2 - n1) <= max(2, 0.02 * n1), (ranks[0]["nnz"], one.model.nnz_per_layer)
    assert ranks[0]["runs_per_round"] == 2
    assert sorted(set(ranks[0]["ranks"])) == [0, 1], "both ranks trained runs of the search"

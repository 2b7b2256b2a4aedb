#!/usr/bin/env python3
"""SparseProx beside PyTorch on the same training workloads, measured side by side.

Workloads (the ones sparseprox_bench runs, bench/bench_main.cpp):
  mackey_glass  6-128-128-64-1 ReLU MLP, MSE, full batch of 1000 rows
  lenet300100   784-300-100-10 ReLU MLP, cross-entropy, batch 128 (MNIST, or MNIST-shaped rows)
  cnn8          3 conv3x3 + ReLU + maxpool, dense 512, dense 10, batch 128
  lenet5        LeNet-5-Caffe (conv5 20, pool, conv5 50, pool, dense 500 ReLU, dense 10), batch 128
  prox          the prox step alone (SGD update + soft threshold + NNZ count) at 1e5 .. --max-n
                parameters

PyTorch runs each workload two ways:
  paper  the style of the paper's released code: eager nn.Sequential, optim.SGD, then
         w.data = torch.sign(w) * torch.clamp(w.abs() - lr*lam, min=0) per weight tensor and an
         NNZ count read with .item() every step
  best   the fastest honest PyTorch: gradients set to None instead of zeroed, the SGD update
         and the soft threshold in place with foreach ops under no_grad (S(w) = w - clamp(w,
         -tau, tau)), the NNZ kept as a tensor and read once at the end; with --compile also
         torch.compile of the model, the faster of the two kept
Batches are rows of one preloaded tensor picked by a shuffled index in both styles, as
SparseProx does, so neither side pays for a data loader.

Conditions on the CPU: 1 thread; all threads (SparseProx's default setting, PyTorch at its
default thread count and at the core count, the faster kept); all threads with one core kept
busy by another process (a Python busy loop this script spawns). CUDA, when both sides have it:
once. Each PyTorch measurement runs in its own process (a clean thread pool).

Writes one JSON (machine, every figure, the ratios) and prints the table. PyTorch is optional:
without it (or with --no-torch) only the SparseProx figures are collected.

  python3 bench/torch_compare.py --bench build/bench/sparseprox_bench --out bench/results/torch_compare.json
"""
import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = ["mackey_glass", "lenet300100", "cnn8", "lenet5"]


# ---- the PyTorch side (runs in a worker process) ------------------------------------------------

def read_idx_images(path, n_max):
    import numpy as np
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    n, rows, cols = (int.from_bytes(data[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    n = min(n, n_max)
    x = np.frombuffer(data, dtype=np.uint8, count=n * rows * cols, offset=16).astype(np.float32)
    return (x / 127.5 - 1.0).reshape(n, rows * cols)  # [-1, 1], SparseProx's default scale


def read_idx_labels(path, n_max):
    import numpy as np
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    n = min(int.from_bytes(data[4:8], "big"), n_max)
    return np.frombuffer(data, dtype=np.uint8, count=n, offset=8).astype(np.int64)


def image_data(data_dir, torch):
    """MNIST's training rows when present, else MNIST-shaped synthetic rows."""
    import numpy as np
    base = os.path.join(data_dir, "mnist")
    for suffix in (".gz", ""):
        xi = os.path.join(base, "train-images-idx3-ubyte" + suffix)
        yi = os.path.join(base, "train-labels-idx1-ubyte" + suffix)
        if os.path.exists(xi) and os.path.exists(yi):
            return torch.from_numpy(read_idx_images(xi, 60000)), torch.from_numpy(read_idx_labels(yi, 60000)), "mnist"
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(60000, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=60000)
    return torch.from_numpy(x), torch.from_numpy(y), "synthetic"


def build(workload, torch):
    nn = torch.nn
    if workload == "mackey_glass":
        return nn.Sequential(nn.Linear(6, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                             nn.Linear(64, 1))
    if workload == "lenet300100":
        return nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    if workload == "cnn8":
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                             nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(128 * 3 * 3, 512), nn.ReLU(), nn.Linear(512, 10))
    if workload == "lenet5":
        return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                             nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    raise ValueError(workload)


def torch_training(args, torch):
    dev = torch.device(args.device)
    torch.manual_seed(1)
    lr, lam = 0.1, 1e-4
    tau = lr * lam
    if args.workload == "mackey_glass":
        x = torch.rand(1000, 6) * 2 - 1
        y = torch.rand(1000, 1) * 2 - 1
        batch, loss_fn = 1000, torch.nn.MSELoss()
        source = "random rows shaped as Mackey-Glass's 1000 training rows"
    else:
        x, y, source = image_data(args.data_dir, torch)
        batch, loss_fn = 128, torch.nn.CrossEntropyLoss()
    x, y = x.to(dev), y.to(dev)
    n = x.shape[0]
    model = build(args.workload, torch).to(dev)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    params = list(model.parameters())
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    if args.style == "paper":
        opt = torch.optim.SGD(model.parameters(), lr=lr)

        def step(xb, yb):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            for w in weights:
                w.data = torch.sign(w.data) * torch.clamp(w.data.abs() - lr * lam, min=0)
            return sum((w != 0).sum().item() for w in weights)
        forward = model
    else:
        forward = model
        if args.compile:
            forward = torch.compile(model)
        nnz = torch.zeros((), dtype=torch.int64, device=dev)

        def step(xb, yb):
            nonlocal nnz
            for p in params:
                p.grad = None
            loss = loss_fn(forward(xb), yb)
            loss.backward()
            with torch.no_grad():
                torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)
                clipped = torch._foreach_clamp_min(torch._foreach_clamp_max(weights, tau), -tau)
                torch._foreach_sub_(weights, clipped)
                nnz = sum(torch.count_nonzero(w) for w in weights)
            return nnz

    order = torch.randperm(n, device=dev)
    pos = 0

    def next_batch():
        nonlocal pos, order
        if batch >= n:
            return x, y
        if pos + batch > n:
            order, pos = torch.randperm(n, device=dev), 0
        idx = order[pos:pos + batch]
        pos += batch
        return x[idx], y[idx]

    warm = args.warm_steps
    for _ in range(warm):
        step(*next_batch())
    sync()
    # A probe of a few steps sizes the measured run to about --seconds.
    t0 = time.perf_counter()
    for _ in range(3):
        step(*next_batch())
    sync()
    per_step = max((time.perf_counter() - t0) / 3, 1e-6)
    steps = int(min(max(args.seconds / per_step, 10), 200000))
    t0 = time.perf_counter()
    for _ in range(steps):
        r = step(*next_batch())
    sync()
    wall = time.perf_counter() - t0
    final_nnz = int(r) if not hasattr(r, "item") else int(r.item())
    return {"samples_per_second": steps * batch / wall, "steps": steps, "batch": batch, "wall_seconds": wall,
            "nnz": final_nnz, "data": source}


def torch_prox(args, torch):
    """The prox step alone over n parameters (4 square layers like sparseprox_bench)."""
    dev = torch.device(args.device)
    n = args.n_params
    k = max(1, round((n / 4) ** 0.5))
    lr, lam = 1e-3, 1e-3
    tau = lr * lam
    ws = [((torch.rand(k, k, device=dev) * 2 - 1)) for _ in range(4)]
    gs = [((torch.rand(k, k, device=dev) * 2 - 1)) for _ in range(4)]
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    if args.style == "paper":
        def step():
            for w, g in zip(ws, gs):
                w.add_(g, alpha=-lr)  # optim.SGD's update
            for i, w in enumerate(ws):
                ws[i] = torch.sign(w) * torch.clamp(w.abs() - tau, min=0)
            return sum((w != 0).sum().item() for w in ws)
    else:
        def step():
            with torch.no_grad():
                torch._foreach_add_(ws, gs, alpha=-lr)
                clipped = torch._foreach_clamp_min(torch._foreach_clamp_max(ws, tau), -tau)
                torch._foreach_sub_(ws, clipped)
                return sum(torch.count_nonzero(w) for w in ws)
    for _ in range(2):
        step()
    sync()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    ms = statistics.median(times) * 1e3
    n_real = 4 * k * k
    return {"n_params": n_real, "median_ms": ms, "gb_per_s": 12.0 * n_real / (ms * 1e6)}


def worker(args):
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    result = torch_prox(args, torch) if args.workload == "prox" else torch_training(args, torch)
    result.update({"torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
                   "compiled": bool(args.compile)})
    print(json.dumps(result))


# ---- the driver ---------------------------------------------------------------------------------

def physical_cores():
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return os.cpu_count() or 1
    cores = set()
    for c in cpus:
        base = f"/sys/devices/system/cpu/cpu{c}/topology/"
        try:
            with open(base + "physical_package_id") as f1, open(base + "core_id") as f2:
                cores.add((f1.read().strip(), f2.read().strip()))
        except OSError:
            cores.add(("?", str(c)))
    return max(1, len(cores))


def machine():
    model, family, number, flags = platform.processor(), "?", "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model == platform.processor():
                    model = value
                elif key == "cpu family" and family == "?":
                    family = value
                elif key == "model" and number == "?":
                    number = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    # The widest vectors the CPU has: PyTorch's oneDNN kernels use AVX-512 where it is present,
    # SparseProx's own loops AVX2, so the ratios differ between the two kinds of x86 machine.
    vectors = next((isa for isa in ("avx512f", "avx2") if isa in flags), "baseline")
    return {"cpu": model, "cpu_family_model": f"{family}/{number}", "vector_isa": vectors,
            "physical_cores": physical_cores(), "logical_cpus": os.cpu_count(),
            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()), "python": platform.python_version(),
            "system": platform.platform()}


class Busy:
    """One process spinning on a core for the duration of a `with` block."""

    def __enter__(self):
        self.p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def run_torch(args, workload, style, device, threads, extra=()):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--workload", workload, "--style", style,
           "--device", device, "--threads", str(threads), "--seconds", str(args.seconds), "--data-dir", args.data_dir,
           "--repeats", str(args.repeats), "--warm-steps", str(args.warm_steps), *extra]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_sparseprox(args, threads, only, device="cpu", workload=None):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [args.bench, "--json", path, "--data-dir", args.data_dir, "--only", only, "--seconds", str(args.seconds),
           "--repeats", str(args.repeats), "--max-n", str(args.max_n)]
    if workload:
        cmd += ["--workloads", workload]
    if threads > 0:
        cmd += ["--threads", str(threads)]
    if device == "cuda":
        cmd.append("--cuda-only")
    elif not args.cuda:
        cmd.append("--cpu-only")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout * 4)
        if out.returncode != 0:
            raise SystemExit(f"torch_compare: {' '.join(cmd)} failed: {out.stderr.strip()[-300:]}")
        with open(path) as f:
            return json.load(f)
    finally:
        os.unlink(path)


def ratio(a, b):
    return a / b if a and b else None


def summarize(rows, figure):
    """Per (workload, device, condition): the median figure of each side over the rounds, and the
    median, least and greatest of the per-round ratios (a round's ratio compares figures measured
    minutes apart at most; the machine's drift between rounds stays out of it)."""
    keys = []
    for r in rows:
        k = (r["workload"], r["device"], r["condition"])
        if k not in keys:
            keys.append(k)
    out = []
    for k in keys:
        mine = [r for r in rows if (r["workload"], r["device"], r["condition"]) == k]
        med = lambda vals: statistics.median(vals) if vals else None
        entry = {"workload": k[0], "device": k[1], "condition": k[2], "rounds": len(mine)}
        for side in ("sparseprox", "torch_best", "torch_paper"):
            entry[side] = med([figure(r[side]) for r in mine if figure(r[side]) is not None])
        for name in ("ratio_vs_best", "ratio_vs_paper", "floor_vs_best", "floor_vs_paper", "busy_over_quiet",
                     "torch_best_busy_over_quiet"):
            vals = [r[name] for r in mine if r.get(name) is not None]
            entry[name] = med(vals)
            entry[name + "_min"] = min(vals) if vals else None
            entry[name + "_max"] = max(vals) if vals else None
        out.append(entry)
    return out


def markdown(path):
    """A Markdown table of a written JSON (for the README)."""
    with open(path) as f:
        d = json.load(f)
    names = {"1": "1 thread", "all": "all threads", "busy": "all, 1 core busy"}

    def fig(r):
        if not r or "error" in r:
            return None
        return r.get("samples_per_second", r.get("gb_per_s"))

    if d.get("summary") and d["info"].get("rounds", 1) > 1:
        n = d["info"]["rounds"]
        print(f"Medians over {n} rounds; in brackets the least and greatest ratio of one round.\n")
        print("| workload | device | threads | SparseProx | PyTorch best | PyTorch paper style | vs best | vs paper |"
              " busy / quiet |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in d["summary"]:
            unit = " GB/s" if m["workload"].startswith("prox") else ""
            cells = [m["sparseprox"], m["torch_best"], m["torch_paper"]]
            text = [f"{v:,.1f}{unit}" if unit and v is not None else (f"{v:,.0f}" if v is not None else "-")
                    for v in cells]

            def rr(k):
                if m.get(k) is None:
                    return "-"
                return f"{m[k]:.2f}x [{m[k + '_min']:.2f}-{m[k + '_max']:.2f}]"
            bq = f"{m['busy_over_quiet']:.2f}" if m.get("busy_over_quiet") is not None else "-"
            print(f"| {m['workload']} | {m['device']} | {names.get(m['condition'], m['condition'])} | {text[0]} | "
                  f"{text[1]} | {text[2]} | {rr('ratio_vs_best')} | {rr('ratio_vs_paper')} | {bq} |")
        return
    print("| workload | device | threads | SparseProx | PyTorch best | PyTorch paper style | vs best | vs paper |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in d["rows"]:
        unit = " GB/s" if r["workload"].startswith("prox") else ""
        cells = [fig(r["sparseprox"]), fig(r["torch_best"]), fig(r["torch_paper"])]
        text = [f"{v:,.1f}{unit}" if unit and v is not None else (f"{v:,.0f}" if v is not None else "-") for v in cells]
        rb, rp = r.get("ratio_vs_best"), r.get("ratio_vs_paper")
        print(f"| {r['workload']} | {r['device']} | {names.get(r['condition'], r['condition'])} | {text[0]} | {text[1]} | "
              f"{text[2]} | {f'{rb:.2f}x' if rb else '-'} | {f'{rp:.2f}x' if rp else '-'} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "bench", "sparseprox_bench"))
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "torch_compare.json"))
    ap.add_argument("--seconds", type=float, default=2.0, help="about how long each training measurement runs")
    ap.add_argument("--repeats", type=int, default=10, help="timings per prox-step figure (median)")
    ap.add_argument("--max-n", type=float, default=1e8, help="largest prox-step size")
    ap.add_argument("--workloads", default=",".join(WORKLOADS + ["prox"]))
    ap.add_argument("--conditions", default="1,all,busy", help="CPU conditions: 1 thread, all threads, busy neighbour")
    ap.add_argument("--quick", action="store_true", help="short runs: 0.5 s each, prox to 1e7, 5 repeats")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every condition this many times, the rounds one after the other (in each, "
                         "workload by workload, SparseProx then PyTorch), and report the median figures and ratios "
                         "with their range")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also try torch.compile in the best style")
    ap.add_argument("--cuda", action="store_true", help="also measure on the GPU (both sides)")
    ap.add_argument("--cuda-only", action="store_true", help="only the GPU (no CPU conditions)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--note", default="", help="a line about the conditions, stored in the JSON")
    ap.add_argument("--markdown", metavar="JSON", help="print a written JSON as a Markdown table and stop")
    # worker mode
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--style", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n-params", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--warm-steps", type=int, default=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    if args.markdown:
        markdown(args.markdown)
        return
    if args.cuda_only:
        args.cuda, args.conditions = True, ""
    if args.quick:
        args.seconds, args.max_n, args.repeats = 0.5, min(args.max_n, 1e7), 5
    args.max_n = int(args.max_n)
    if not os.access(args.bench, os.X_OK):
        raise SystemExit(f"torch_compare: no benchmark executable at {args.bench} (build it, or give --bench)")
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS + ["prox"]:
            raise SystemExit(f"torch_compare: unknown workload '{w}' (expected {', '.join(WORKLOADS + ['prox'])})")
    conditions = [c for c in args.conditions.split(",") if c]
    for c in conditions:
        if c not in ("1", "all", "busy"):
            raise SystemExit(f"torch_compare: unknown condition '{c}' (expected 1, all, busy)")
    have_torch = False
    torch_version = None
    if not args.no_torch:
        probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__, torch.cuda.is_available(), "
                                                      "torch.get_num_threads())"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            have_torch = True
            torch_version, torch_cuda, torch_default_threads = probe.stdout.split()
            torch_cuda = torch_cuda == "True"
            torch_default_threads = int(torch_default_threads)
        else:
            print("torch_compare: PyTorch is not importable here; SparseProx figures only", file=sys.stderr)
    cores = physical_cores()
    info = {"machine_before": machine(), "torch": torch_version, "conditions": conditions, "seconds": args.seconds,
            "note": args.note, "sparseprox_threads": {}}
    train_keys = [w for w in workloads if w != "prox"]
    rows = []

    def torch_best_threads(workload, style, device, n_threads_all, extra=()):
        """At 'all threads': PyTorch at its default count and at the physical core count, the faster."""
        counts = sorted({torch_default_threads, n_threads_all}) if device == "cpu" else [0]
        best = None
        for c in counts:
            r = run_torch(args, workload, style, device, c, extra)
            key = "samples_per_second" if workload != "prox" else "gb_per_s"
            if best is None or ("error" not in r and r.get(key, 0) > best.get(key, 0)):
                best = r
        return best

    def torch_side(workload, device, threads, extra=()):
        if not have_torch or (device == "cuda" and not torch_cuda):
            return {}
        out = {}
        for style in ("paper", "best"):
            if threads == "all":
                r = torch_best_threads(workload, style, device, cores, extra)
            else:
                r = run_torch(args, workload, style, device, threads, extra)
            if style == "best" and args.compile and workload != "prox":
                rc = run_torch(args, workload, style, device, 0 if threads == "all" else threads,
                               (*extra, "--compile"))
                if "error" not in rc and rc.get("samples_per_second", 0) > r.get("samples_per_second", 0):
                    r = rc
            out[style] = r
        return out

    def collect(condition, device="cpu", rnd=0):
        # Workload by workload, SparseProx and then PyTorch: the two sides of a ratio are measured
        # within a minute or two of each other, not across the whole round (the machine's speed
        # drifts over minutes).
        threads = 1 if condition == "1" else 0
        sp = {}
        for w in train_keys:
            sp = run_sparseprox(args, threads, "training", device, workload=w)
            mine = next((r for r in sp["training"] if r["key"] == w and r["device"].startswith(device)), None)
            t = torch_side(w, device, 1 if condition == "1" else "all")
            rows.append({"workload": w, "device": device, "condition": condition, "round": rnd,
                         "sparseprox": mine, "torch_paper": t.get("paper"), "torch_best": t.get("best")})
            print_row(rows[-1])
        if "prox" in workloads:
            spp = sp = run_sparseprox(args, threads, "prox", device)
            for r in spp["prox_step"]:
                if not r["device"].startswith(device) or not r["variant"].startswith("fused"):
                    continue
                n = r["n_params"]
                t = torch_side("prox", device, 1 if condition == "1" else "all", ("--n-params", str(n))) if have_torch else {}
                copy = next((c for c in spp["prox_step"] if c["n_params"] == n and c["device"] == r["device"]
                             and c["variant"].startswith("copy")), None)
                rows.append({"workload": f"prox {n}", "device": device, "condition": condition, "round": rnd,
                             "sparseprox": r,
                             "copy_gb_per_s": copy["gb_per_s"] if copy else None,
                             "torch_paper": t.get("paper"), "torch_best": t.get("best")})
                print_row(rows[-1])
        return sp

    def figure(r):
        if not r or "error" in r:
            return None
        return r.get("samples_per_second", r.get("gb_per_s"))

    def save(partial=True):
        """The JSON so far (after every row, so a run cut short still leaves its figures)."""
        out = {"info": dict(info, complete=not partial), "rows": rows}
        if summary:
            out["summary"] = summary
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.out)

    def print_row(row):
        fmt = lambda v: f"{v:12.1f}" if v is not None else f"{'-':>12}"
        rf = lambda v: f"{v:7.2f}x" if v is not None else f"{'-':>8}"
        s, p, b = figure(row["sparseprox"]), figure(row["torch_paper"]), figure(row["torch_best"])
        row["ratio_vs_best"], row["ratio_vs_paper"] = ratio(s, b), ratio(s, p)
        # The step's GEMMs alone (sparseprox_bench's gemm_floor): the most any step built on this
        # GEMM could reach, against the same PyTorch figures.
        floor = (row["sparseprox"] or {}).get("gemm_floor") or {}
        f = floor.get("samples_per_second")
        row["floor_vs_best"], row["floor_vs_paper"] = ratio(f, b), ratio(f, p)
        floor_text = f"  (GEMM floor {f:,.0f}: {rf(row['floor_vs_best'])} {rf(row['floor_vs_paper'])})" if f else ""
        unit = "GB/s" if row["workload"].startswith("prox") else "samples/s"
        print(f"{row['workload']:<20} {row['device']:<5} {row['condition']:<5} {fmt(s)} {fmt(b)} {fmt(p)} "
              f"{rf(row['ratio_vs_best'])} {rf(row['ratio_vs_paper'])}  {unit}{floor_text}", flush=True)
        save()

    print(f"{'workload':<20} {'dev':<5} {'cond':<5} {'sparseprox':>12} {'torch best':>12} {'torch paper':>12} "
          f"{'vs best':>8} {'vs paper':>8}")
    summary = []
    info["rounds"] = args.rounds
    for rnd in range(args.rounds):
        if args.rounds > 1:
            print(f"-- round {rnd + 1} of {args.rounds}", flush=True)
        for c in conditions:
            if c == "busy":
                with Busy():
                    sp = collect("busy", rnd=rnd)
            else:
                sp = collect(c, rnd=rnd)
            info["sparseprox_threads"][c] = sp.get("machine", {}).get("threads")
            info.setdefault("sparseprox_version", sp.get("version"))
        if args.cuda:
            collect("all", "cuda", rnd)
    info["machine_after"] = machine()
    # Busy neighbour against the quiet all-threads figure of the same round, per workload.
    for row in rows:
        if row["condition"] == "busy":
            quiet = next((q for q in rows if q["workload"] == row["workload"] and q["device"] == row["device"]
                          and q["condition"] == "all" and q["round"] == row["round"]), None)
            if quiet:
                row["busy_over_quiet"] = ratio(figure(row["sparseprox"]), figure(quiet["sparseprox"]))
                row["torch_best_busy_over_quiet"] = ratio(figure(row["torch_best"]), figure(quiet["torch_best"]))
    summary.extend(summarize(rows, figure))
    if args.rounds > 1:
        print(f"\nmedians over {args.rounds} rounds (per-round ratio range in brackets):")
        for m in summary:
            rng = lambda k: (f"{m[k]:.2f}x [{m[k + '_min']:.2f}-{m[k + '_max']:.2f}]" if m.get(k) is not None else "-")
            print(f"{m['workload']:<20} {m['device']:<5} {m['condition']:<5} {m['sparseprox'] or 0:12.1f} "
                  f"vs best {rng('ratio_vs_best')}  vs paper {rng('ratio_vs_paper')}"
                  + (f"  busy/quiet {m['busy_over_quiet']:.2f}" if m.get("busy_over_quiet") is not None else ""))
    save(partial=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Draw the trace of a lambda search from a `sparseprox search --report` JSON file.

    python3 scripts/plot_search.py report.json -o search.png [--title TEXT]

Three panels over the outer iterations (the adaptive strategy: its steering intervals):
lambda (one line per weight layer, log scale), NNZ (total and per layer, with the target
band) and the train/test loss. Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import os
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="JSON report written by `sparseprox search --report`")
    ap.add_argument("-o", "--output", required=True, help="PNG file to write")
    ap.add_argument("--title", default=None, help="figure title (default: from the report)")
    args = ap.parse_args()

    try:
        with open(args.report, encoding="utf-8") as f:
            rep = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"plot_search: cannot read {args.report}: {e}")
    trace = rep.get("search")
    if not isinstance(trace, list) or not trace:
        sys.exit(f"plot_search: {args.report} has no 'search' list (is it a `sparseprox search` report?)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [t["iteration"] for t in trace]
    n_layers = len(trace[0]["lambda"])
    targets = rep.get("target_nnz", [])
    rho = rep.get("tolerance", 0.0)
    adaptive = rep.get("strategy") == "adaptive"
    xlabel = "steering interval" if adaptive else "outer iteration (training run)"

    fig, ax = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    same = all(len(set(t["lambda"])) == 1 for t in trace)
    if same:
        ax[0].plot(it, [t["lambda"][0] for t in trace], "o-", color="C0", label="λ")
    else:
        for l in range(n_layers):
            ax[0].plot(it, [t["lambda"][l] for t in trace], "o-", ms=3, label=f"λ layer {l}")
    for t in trace:
        if t["in_band"]:
            ax[0].axvline(t["iteration"], color="green", lw=0.8, ls=":")
    ax[0].set_yscale("log")
    ax[0].set_ylabel("λ")
    ax[0].legend(fontsize=8)

    ax[1].plot(it, [max(t["nnz_total"], 1) for t in trace], "o-", color="k", ms=3, label="total")
    for l in range(n_layers):
        ax[1].plot(it, [max(t["nnz"][l], 1) for t in trace], ".-", lw=0.8, label=f"layer {l}")
    if len(targets) == 1:
        lo, hi = targets[0] * (1 - rho), targets[0] * (1 + rho)
        ax[1].axhspan(lo, hi, color="green", alpha=0.25)
        ax[1].axhline(targets[0], color="green", lw=0.8, label=f"target {targets[0]} ±{rho:g}")
    else:
        for l, tg in enumerate(targets):
            ax[1].axhline(tg, color=f"C{l + 1}", lw=0.8, ls="--")
    ax[1].set_yscale("log")
    ax[1].set_ylabel("NNZ")
    ax[1].legend(fontsize=8, ncol=2)

    def series(key):
        return [t[key] if t[key] is not None else float("nan") for t in trace]

    ax[2].plot(it, series("train_loss"), "o-", ms=3, label="train loss")
    if any(t["test_loss"] is not None for t in trace):
        ax[2].plot(it, series("test_loss"), "s-", ms=3, label="test loss")
    ax[2].set_yscale("log")
    ax[2].set_ylabel(rep.get("loss", "loss"))
    ax[2].set_xlabel(xlabel)
    ax[2].legend(fontsize=8)

    title = args.title or (
        f"{rep.get('model', '')} on {os.path.basename(str(rep.get('data', '')))} — "
        f"{rep.get('strategy', '')}: {rep.get('outer_iterations')} run(s), "
        f"{rep.get('total_steps')} steps, {'reached' if rep.get('reached') else 'band NOT reached'}"
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    # Written next to the target and renamed into place: an interrupted run leaves no half file.
    out_dir = os.path.dirname(os.path.abspath(args.output))
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out_dir)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

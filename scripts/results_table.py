#!/usr/bin/env python3
"""Markdown tables from `sparseprox train|search --report` JSON files.

    python3 scripts/results_table.py summary REPORT.json...     one row per report
    python3 scripts/results_table.py trace REPORT.json          one row per outer iteration
    python3 scripts/results_table.py compare REPORT.json...     the sparsifier comparison: method,
                                                                NNZ, units alive, accuracy, time

The numbers are copied from the reports, so a results page built with this script matches the
runs it cites.
"""
import json
import os
import sys


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"results_table: cannot read {path}: {e}")


def fmt(v, spec=".4g"):
    return "—" if v is None else format(v, spec)


def lambdas(v):
    if len(set(v)) == 1:
        return fmt(v[0], ".4g")
    return ", ".join(fmt(x, ".3g") for x in v)


def metric(rep, key):
    """Test accuracy for classification, MSE otherwise."""
    if rep.get("test_accuracy") is not None and key == "test":
        return f"{100 * rep['test_accuracy']:.2f}%"
    return fmt(rep.get(f"{key}_loss"), ".5f")


def summary(paths):
    print("| run | strategy | band | runs | total steps | final λ | NNZ per layer | NNZ total | train loss | test | wall | device |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in paths:
        r = load(p)
        name = os.path.splitext(os.path.basename(p))[0]
        nnz = ", ".join(str(l["nnz"]) for l in r["layers"])
        if r.get("command") == "search":
            band = "hit" if r.get("reached") else "**missed**"
            strategy = r.get("strategy", "")
            if strategy in ("paper", "warm") and not r.get("stop_run0", True):
                strategy += " (run 0 unstopped)"
            runs, steps = r.get("outer_iterations"), r.get("total_steps")
            wall = r.get("search_wall_seconds")
            lam = lambdas(r["lambda_final"])
        else:
            band = "hit" if r.get("stopped_in_band") else ("—" if not r.get("target_nnz") else "**missed**")
            strategy = "train" + (f", wd {r['weight_decay']:g}" if r.get("weight_decay") else "")
            runs, steps, wall = 1, r.get("steps"), r.get("wall_seconds")
            lam = lambdas([l["lambda"] for l in r["layers"]])
        total = r["nnz_total"]
        pct = 100.0 * total / r["n_weights_total"]
        print(f"| {name} | {strategy} | {band} | {runs} | {steps:,} | {lam} | {nnz} | {total:,} ({pct:.2f}%) | "
              f"{metric(r, 'train')} | {metric(r, 'test')} | {wall:.0f} s | {r.get('device', '')} |")


def trace(path):
    r = load(path)
    print("| it | rule | λ | NNZ per layer | NNZ total | steps | train loss | test | in band |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in r["search"]:
        rule = t["rule"]
        if t.get("layer_rules") and len(set(t["layer_rules"])) > 1:
            rule = "/".join(t["layer_rules"])
        test = (f"{100 * t['test_accuracy']:.2f}%" if t.get("test_accuracy") is not None
                else fmt(t.get("test_loss"), ".5f"))
        print(f"| {t['iteration']} | {rule} | {lambdas(t['lambda'])} | {', '.join(map(str, t['nnz']))} | "
              f"{t['nnz_total']:,} | {t['steps']:,} | {fmt(t.get('train_loss'), '.5f')} | {test} | "
              f"{'yes' if t['in_band'] else ''} |")


def compare(paths):
    print("| method | target | reached | NNZ total | NNZ per layer | units alive per layer | test accuracy | "
          "epochs | runs | total time | device |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in paths:
        r = load(p)
        method = r.get("method", "l1")
        opts = r.get("method_options") or {}
        if method == "l0" and opts.get("group"):
            method = "l0 (group gates)"
        if r.get("command") == "train" and not r.get("target_nnz"):
            method = "dense" if all(l["lambda"] == 0 for l in r["layers"]) else method
        target = r.get("target_nnz") or []
        if len(target) == 1:
            target_s = f"{target[0]:,} ({100.0 * target[0] / r['n_weights_total']:.1f}%) ±{100 * r['tolerance']:g}%"
        elif target:
            target_s = ", ".join(map(str, target))
        else:
            target_s = "—"
        if r.get("command") == "search":
            reached = "yes" if r.get("reached") else "**no**"
            wall = r.get("search_wall_seconds")
            runs = r.get("outer_iterations")
        else:
            reached = "—" if not target else ("yes" if r.get("stopped_in_band") else "**no**")
            wall = r.get("wall_seconds")
            runs = 1
        total = r["nnz_total"]
        pct = 100.0 * total / r["n_weights_total"]
        nnz = ", ".join(str(l["nnz"]) for l in r["layers"])
        alive = ", ".join(str(l.get("alive_units", "—")) for l in r["layers"])
        acc = r.get("test_accuracy")
        acc_s = f"{100 * acc:.2f}%" if acc is not None else fmt(r.get("test_loss"), ".5f")
        epochs = r.get("epochs_started")
        print(f"| {method} | {target_s} | {reached} | {total:,} ({pct:.2f}%) | {nnz} | {alive} | {acc_s} | "
              f"{epochs} | {runs} | {wall:.0f} s | {r.get('device', '')} |")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("summary", "trace", "compare"):
        sys.exit(__doc__)
    if sys.argv[1] == "summary":
        summary(sys.argv[2:])
    elif sys.argv[1] == "compare":
        compare(sys.argv[2:])
    else:
        for p in sys.argv[2:]:
            trace(p)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/torch_compare.py's bookkeeping, without PyTorch and without timing anything: the medians
and ratio ranges of --rounds, and the Markdown table written from them."""
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile


def load(repo):
    spec = importlib.util.spec_from_file_location("torch_compare", os.path.join(repo, "bench", "torch_compare.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    repo = sys.argv[sys.argv.index("--repo") + 1]
    tc = load(repo)

    def fig(v):
        return {"samples_per_second": v} if v is not None else None

    def row(rnd, cond, mine, best, paper):
        r = {"workload": "cnn8", "device": "cpu", "condition": cond, "round": rnd, "sparseprox": fig(mine),
             "torch_best": fig(best), "torch_paper": fig(paper)}
        r["ratio_vs_best"] = tc.ratio(mine, best)
        r["ratio_vs_paper"] = tc.ratio(mine, paper)
        return r

    def figure(r):
        return None if not r or "error" in r else r.get("samples_per_second", r.get("gb_per_s"))

    rows = [row(0, "all", 1000, 800, 500), row(1, "all", 1200, 1000, 400), row(2, "all", 900, 1000, 600),
            row(0, "busy", 600, 400, None)]
    s = tc.summarize(rows, figure)
    assert [(m["workload"], m["condition"], m["rounds"]) for m in s] == [("cnn8", "all", 3), ("cnn8", "busy", 1)], s
    a = s[0]
    assert a["sparseprox"] == 1000 and a["torch_best"] == 1000 and a["torch_paper"] == 500, a
    # the median of the per-round ratios (1.25, 1.2, 0.9), not the ratio of the medians (1.0)
    assert abs(a["ratio_vs_best"] - 1.2) < 1e-12 and a["ratio_vs_best_min"] == 0.9 and a["ratio_vs_best_max"] == 1.25, a
    assert abs(a["ratio_vs_paper"] - 2.0) < 1e-12 and a["ratio_vs_paper_min"] == 1.5 and a["ratio_vs_paper_max"] == 3.0
    b = s[1]
    assert b["torch_paper"] is None and b["ratio_vs_paper"] is None and b["ratio_vs_paper_min"] is None, b

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.json")
        with open(path, "w") as f:
            json.dump({"info": {"rounds": 3}, "rows": rows, "summary": s}, f)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            tc.markdown(path)
        text = out.getvalue()
    assert "Medians over 3 rounds" in text, text
    assert "| cnn8 | cpu | all threads | 1,000 | 1,000 | 500 | 1.20x [0.90-1.25] | 2.00x [1.50-3.00] | - |" in text, text
    print("torch_compare bookkeeping: ok")


if __name__ == "__main__":
    main()

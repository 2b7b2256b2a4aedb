"""Search a 5%-dense MLP on MNIST from Python, check it, save it and export it to PyTorch.

    python examples/python/mnist_search.py [--data ../shared/data/mnist] [--density 0.05]
                                           [--steps 1000] [--device auto] [--save mlp.safetensors]

Needs the package (pip install .) and NumPy; the PyTorch export runs when PyTorch is installed.
"""

import argparse
import sys

import numpy as np

import sparseprox


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/mnist", help="MNIST folder (IDX files, gzipped or not)")
    p.add_argument("--model", default="lenet300100", help="a preset, dense:784-...-10 or a JSON model")
    p.add_argument("--density", type=float, default=0.05, help="target fraction of nonzero weights")
    p.add_argument("--tolerance", type=float, default=0.02, help="band half-width, relative to the target")
    p.add_argument("--steps", type=int, default=1000, help="steps per run of the search")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--save", default="", help="write the model as safetensors")
    args = p.parse_args()

    (X, y), (X_test, y_test) = sparseprox.load_idx(args.data)
    print(f"train {X.shape} {X.dtype}, test {X_test.shape}; device {sparseprox.describe_device(args.device)}")
    result = sparseprox.search(args.model, X, y, test=(X_test, y_test), target_density=args.density,
                               tolerance=args.tolerance, steps=args.steps, lr=args.lr, device=args.device,
                               progress=True)
    report = result.report
    print(result)
    for layer in result.model.layers:
        print(f"  {layer.name} {layer.kind} {layer.weight.shape}: {layer.nnz} nonzero "
              f"({100 * layer.nnz / layer.n_weights:.2f}%)")

    pred = result.model.predict(X_test, device=args.device).argmax(axis=1)
    accuracy = float(np.mean(pred == y_test))
    print(f"test accuracy {100 * accuracy:.2f}% (report: {100 * report['test_accuracy']:.2f}%), "
          f"{report['outer_iterations']} runs, {report['total_steps']} steps, {report['search_wall_seconds']:.1f} s")
    if args.save:
        result.model.save(args.save, {"lambda": ",".join(f"{v:g}" for v in result.lam)})
        print(f"saved {args.save}")

    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: skipping the export")
        return 0 if result.reached else 3
    net = sparseprox.to_torch(result.model).eval()
    with torch.no_grad():
        torch_pred = net(torch.from_numpy(X_test)).argmax(dim=1).numpy()
    print(f"PyTorch: {net.__class__.__name__} of {len(net)} modules, agrees on "
          f"{100 * np.mean(torch_pred == pred):.2f}% of the test predictions")
    return 0 if result.reached else 3


if __name__ == "__main__":
    sys.exit(main())

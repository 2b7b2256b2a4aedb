"""Export to PyTorch: a torch.nn.Sequential with the model's layers and weights."""

from __future__ import annotations

from typing import Any


def _activation(nn: Any, name: str) -> Any:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)  # kLeakyReluSlope
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"to_torch: unknown activation '{name}'")


def to_torch(model: Any) -> Any:
    """A ``torch.nn.Sequential`` computing the same function as ``model``, weights copied in
    (float32, on the CPU; the zeros stay exact zeros). Dense layers become ``nn.Linear`` (after
    an ``nn.Flatten`` where the input is image-shaped), conv2d ``nn.Conv2d``, the pools
    ``nn.MaxPool2d``/``nn.AvgPool2d`` (count_include_pad=True), activations their modules.
    The network takes (n, n_features) rows, or (n, c, h, w) images for image models.
    PyTorch is imported here, so the rest of the package works without it."""
    try:
        import torch
        from torch import nn
    except ImportError as e:
        raise ImportError("sparseprox.to_torch needs PyTorch (pip install torch)") from e

    layers = []
    weight_layers = iter(model.layers)
    for spec in model.architecture:
        kind = spec["type"]
        flat_in = spec["in_shape"][1:] == (1, 1)
        if kind == "dense":
            if not flat_in:
                layers.append(nn.Flatten())
            layer = next(weight_layers)
            linear = nn.Linear(spec["n_in"], spec["n_out"])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.weight.copy()))
                linear.bias.copy_(torch.from_numpy(layer.bias.copy()))
            layers.append(linear)
        elif kind == "conv2d":
            layer = next(weight_layers)
            c_out, c_in = layer.weight.shape[0], layer.weight.shape[1]
            conv = nn.Conv2d(c_in, c_out, kernel_size=spec["kernel"], stride=spec["stride"], padding=spec["padding"])
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.weight.copy()))
                conv.bias.copy_(torch.from_numpy(layer.bias.copy()))
            layers.append(conv)
        elif kind == "maxpool2d":
            layers.append(nn.MaxPool2d(kernel_size=spec["kernel"], stride=spec["stride"], padding=spec["padding"]))
        elif kind == "avgpool2d":
            layers.append(nn.AvgPool2d(kernel_size=spec["kernel"], stride=spec["stride"], padding=spec["padding"],
                                       count_include_pad=True))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "activation":
            layers.append(_activation(nn, spec["activation"]))
        else:
            raise ValueError(f"to_torch: layer type '{kind}' has no PyTorch counterpart")
    return nn.Sequential(*layers)

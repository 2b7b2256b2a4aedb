"""Shared fixtures: the data folder, the command-line program and small data sets."""

import os
import pathlib

import numpy as np
import pytest

import sparseprox

ROOT = pathlib.Path(__file__).resolve().parents[2]


def data_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("SPARSEPROX_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    d = data_dir() / "mnist"
    if not (d.is_dir() and any(d.glob("train-images-idx3-ubyte*"))):
        pytest.skip(f"MNIST not found in {d} (set SPARSEPROX_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def cli() -> str:
    """The built `sparseprox` program (ctest sets SPARSEPROX_CLI)."""
    path = os.environ.get("SPARSEPROX_CLI", "")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("the sparseprox command-line program is not built (SPARSEPROX_CLI unset)")
    return path


@pytest.fixture(scope="session")
def mg():
    """The embedded Mackey-Glass split: ((X, y), (X_test, y_test))."""
    return sparseprox.mackey_glass()


@pytest.fixture()
def blobs():
    """A small three-class problem with integer labels."""
    rng = np.random.default_rng(0)
    centers = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    y = rng.integers(0, 3, size=300)
    X = (centers[y] + 0.3 * rng.standard_normal((300, 4))).astype(np.float32)
    return X, y

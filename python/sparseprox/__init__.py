"""SparseProx from Python: sparse neural networks by l1 proximal training.

The package wraps the C++ library (libsparseprox.so, shipped inside it). Data comes in as NumPy
arrays (float32 or float64, any memory order) or any DLPack tensor on the CPU, PyTorch's
included; models come out as :class:`Model` objects whose weights are NumPy views.

    import sparseprox
    (X, y), (X_test, y_test) = sparseprox.load_idx("data/mnist")
    result = sparseprox.search("lenet300100", X, y, test=(X_test, y_test), target_density=0.05)
    print(result.report["nnz_total"], result.report["test_accuracy"])
    logits = result.model.predict(X_test)
    net = sparseprox.to_torch(result.model)        # torch.nn.Sequential with the weights

Keyword arguments follow the command line's flags (``--target-nnz`` is ``target_nnz=``,
``--lambda`` is ``lam=``), and so do the defaults; the result's ``report`` holds the keys of
the command line's ``--report`` JSON. With the same settings and ``device="cpu"`` the results
equal the command line's bit for bit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _sparseprox
from ._sparseprox import (
    DivergedError,
    Error,
    Layer,
    Model,
    cuda_compiled,
    cuda_device_count,
    describe_device,
    load_idx,
    load_libsvm,
    mackey_glass,
    preset_names,
)
from ._torch import to_torch

__version__ = _sparseprox.version()

__all__ = [
    "DivergedError",
    "Error",
    "Layer",
    "Model",
    "SearchResult",
    "TrainResult",
    "cuda_compiled",
    "cuda_device_count",
    "describe_device",
    "evaluate",
    "load_idx",
    "load_libsvm",
    "mackey_glass",
    "preset_names",
    "search",
    "to_torch",
    "train",
    "world",
]

ArrayLike = Any  # a NumPy array, a DLPack tensor (torch.Tensor on the CPU) or a nested sequence
Progress = Union[None, bool, Callable[[Dict[str, Any]], Any]]


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model and the report (the command line's keys)."""

    model: Model
    report: Dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        r = self.report
        return (f"TrainResult(nnz={r['nnz_total']}/{r['n_weights_total']}, steps={r['steps']}, "
                f"test_loss={r['test_loss']}, test_accuracy={r['test_accuracy']})")


@dataclass
class SearchResult:
    """What :func:`search` returns: the model of the run in the band (else the closest run),
    the report (the command line's keys, with the search trace under ``"search"``), whether
    the band was reached and the lambda per weight layer."""

    model: Model
    report: Dict[str, Any] = field(repr=False)

    @property
    def reached(self) -> bool:
        return bool(self.report["reached"])

    @property
    def lam(self) -> list:
        return list(self.report["lambda_final"])

    def __repr__(self) -> str:
        r = self.report
        return (f"SearchResult(reached={r['reached']}, nnz={r['nnz_total']}/{r['n_weights_total']}, "
                f"lambda={r['lambda_final']}, runs={r['outer_iterations']}, test_loss={r['test_loss']}, "
                f"test_accuracy={r['test_accuracy']})")


# ---- arguments ------------------------------------------------------------------------------------

def _array(a: ArrayLike, what: str) -> Any:
    """An object nanobind takes as an ndarray: DLPack-capable objects as they are, anything else
    through numpy.asarray (lists, pandas frames)."""
    if a is None:
        raise TypeError(f"{what} is None")
    if hasattr(a, "__dlpack__"):
        return a
    try:
        return np.asarray(a)
    except Exception as e:  # a ragged list, an object numpy cannot take
        raise TypeError(f"{what}: cannot be read as an array ({e})") from None


def _model(model: Union[Model, str], seed: int) -> Model:
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        return Model(model, seed=seed)
    raise TypeError(f"model: expected a sparseprox.Model or a spec string, got {type(model).__name__}")


def _counts(value: Union[None, int, Sequence[int]], what: str) -> list:
    if value is None:
        return []
    values = [value] if np.isscalar(value) else list(value)
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{what}: {v!r} is not a whole number >= 0")
        out.append(int(v))
    return out


def _floats(value: Union[None, float, Sequence[float]], what: str) -> list:
    if value is None:
        return []
    values = [value] if np.isscalar(value) else list(value)
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number or a list of numbers") from None


def _whole(value: Optional[int], what: str, minimum: int = 0) -> int:
    if value is None:
        return 0
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what}: {value!r} is not a whole number >= {minimum}")
    return int(value)


def _test_pair(test: Optional[Tuple[ArrayLike, ArrayLike]]) -> Tuple[Any, Any]:
    if test is None:
        return None, None
    if not isinstance(test, (tuple, list)) or len(test) != 2:
        raise ValueError("test: give a pair (X_test, y_test)")
    return _array(test[0], "X_test"), _array(test[1], "y_test")


# ---- progress -------------------------------------------------------------------------------------

class _ProgressPrinter:
    """progress=True: a tqdm bar when tqdm is installed, else one line per report on stderr."""

    def __init__(self, total_steps: int, searching: bool):
        self.total = total_steps
        self.searching = searching
        self.bar = None
        self.last_step = 0
        try:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total_steps or None, unit="step", desc="run 0" if searching else "train",
                            dynamic_ncols=True)
        except ImportError:
            self.bar = None

    def __call__(self, event: Dict[str, Any]) -> None:
        if event["event"] == "iteration":
            text = (f"{'interval' if event['rule'] in ('adaptive', 'fixed') else 'run'} {event['iteration']} "
                    f"[{event['rule']}] lambda {event['lambda'][0]:.4g} nnz {event['nnz_total']} "
                    f"({100 * event['density']:.2f}%)"
                    + (f" test accuracy {100 * event['test_accuracy']:.2f}%" if event["test_accuracy"] is not None else "")
                    + ("  IN BAND" if event["in_band"] else ""))
            if self.bar is not None:
                self.bar.write(text)
                if event["rule"] not in ("adaptive", "fixed"):
                    self.bar.reset(total=self.total or None)
                    self.bar.set_description(f"run {event['iteration'] + 1}")
                    self.last_step = 0
            else:
                print(text, file=sys.stderr, flush=True)
            return
        if self.bar is not None:
            step = event["step"]
            if step < self.last_step:
                self.bar.reset(total=self.total or None)
                self.last_step = 0
            self.bar.update(step - self.last_step)
            self.last_step = step
            self.bar.set_postfix(loss=f"{event['loss']:.4g}", nnz=event["nnz"],
                                 density=f"{100 * event['density']:.2f}%", refresh=False)
        else:
            print(f"epoch {event['epoch']} step {event['step']}  loss {event['loss']:.6g}  nnz {event['nnz']} "
                  f"({100 * event['density']:.2f}%)  {event['samples_per_second']:.0f} samples/s  "
                  f"{event['seconds']:.1f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(progress: Progress, options: dict, n_rows: int, searching: bool):
    """(callback for the module, closer) for the progress argument."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        batch = options["batch"]
        rows_per_step = n_rows if batch in (None, "full") else int(batch)
        if batch is None and options["_classification"]:
            rows_per_step = min(128, n_rows)
        per_epoch = -(-n_rows // max(1, rows_per_step))
        budget = [b for b in (options["steps"], options["epochs"] * per_epoch) if b]
        total = min(budget) if budget else (5 * per_epoch if options["_classification"] else 5000)
        printer = _ProgressPrinter(total, searching)
        return printer, printer.close
    if callable(progress):
        return progress, lambda: None
    raise TypeError("progress: give True, False, None or a callable taking a dict")


def _is_classification(y: Any) -> bool:
    kind = getattr(getattr(y, "dtype", None), "kind", None)
    if kind is not None:
        return kind in "iu"
    return "int" in str(getattr(y, "dtype", ""))


def _options(*, lam, lr, epochs, steps, batch, seed, target_nnz, tolerance, min_layers, device, method,
             optimizer, momentum, beta1, beta2, adam_eps, lr_schedule, lr_step_every, lr_gamma, lr_min,
             warmup_steps, weight_decay, loss, finetune, finetune_lr, distributed=False, comm_timeout=0.0,
             l1_form="auto") -> dict:
    if batch is not None and batch != "full":
        if isinstance(batch, (bool, np.bool_)) or not isinstance(batch, (int, np.integer)):
            raise ValueError(f"batch: {batch!r} (give a positive size or 'full')")
        batch = int(batch)
    return {
        "lam": _floats(lam, "lam"),
        "lr": float(lr),
        "epochs": _whole(epochs, "epochs", 1),
        "steps": _whole(steps, "steps", 1),
        "batch": batch,
        "seed": _whole(seed, "seed"),
        "target_nnz": _counts(target_nnz, "target_nnz"),
        "tolerance": float(tolerance),
        "min_layers": _whole(min_layers, "min_layers"),
        "device": str(device),
        "method": str(method),
        "l1_form": str(l1_form),
        "optimizer": str(optimizer),
        "momentum": float(momentum),
        "beta1": float(beta1),
        "beta2": float(beta2),
        "adam_eps": float(adam_eps),
        "lr_schedule": str(lr_schedule),
        "lr_step_every": _whole(lr_step_every, "lr_step_every"),
        "lr_gamma": float(lr_gamma),
        "lr_min": float(lr_min),
        "warmup_steps": _whole(warmup_steps, "warmup_steps"),
        "weight_decay": float(weight_decay),
        "loss": None if loss is None else str(loss),
        "distributed": bool(distributed),
        "comm_timeout": float(comm_timeout),
        "finetune": bool(finetune),
        "finetune_lr": float(finetune_lr),
    }


# ---- training and search --------------------------------------------------------------------------

def world() -> dict:
    """The processes the launcher (``mpirun``) started: ``{"rank", "size", "mpi", "description"}``
    (``mpi``: the library was built with MPI). Starts MPI when the launcher started several
    processes; one process otherwise. Under ``mpirun``, give ``distributed=True`` to
    :func:`train` and :func:`search`, and write files from rank 0 only."""
    return dict(_sparseprox.world())


def train(model: Union[Model, str], X: ArrayLike, y: ArrayLike, *,
          test: Optional[Tuple[ArrayLike, ArrayLike]] = None,
          lam: Union[float, Sequence[float]] = 1e-4,
          lr: float = 0.1,
          epochs: Optional[int] = None,
          steps: Optional[int] = None,
          batch: Union[None, int, str] = None,
          seed: int = 0,
          target_nnz: Union[None, int, Sequence[int]] = None,
          tolerance: float = 0.001,
          min_layers: int = 0,
          device: str = "auto",
          method: str = "l1",
          l1_form: str = "auto",
          optimizer: str = "sgd",
          momentum: float = 0.9,
          beta1: float = 0.9,
          beta2: float = 0.999,
          adam_eps: float = 1e-8,
          lr_schedule: str = "constant",
          lr_step_every: int = 0,
          lr_gamma: float = 0.1,
          lr_min: float = 0.0,
          warmup_steps: int = 0,
          weight_decay: float = 0.0,
          loss: Optional[str] = None,
          finetune: bool = False,
          finetune_lr: float = 0.0,
          distributed: bool = False,
          comm_timeout: float = 0.0,
          progress: Progress = None,
          progress_seconds: float = 2.0) -> TrainResult:
    """Trains a copy of ``model`` by proximal SGD (Algorithm 3), as ``sparseprox train`` does.

    model: a :class:`Model`, or a spec string (``"dense:6-128-1"``, ``"lenet300100"``, JSON, a
        ``.safetensors`` path) initialized with ``seed`` as the command line does.
    X: (n, n_features) or (n, channels, height, width), float32 or float64.
    y: integer class indices (n,) for classification, or float targets (n,) / (n, n_outputs)
        for regression.
    test: (X_test, y_test), evaluated at the end (test_loss, test_accuracy in the report).
    lam: lambda, one value or one per weight layer (``--lambda``).
    epochs, steps: the run length; the smaller wins when both are given (default: 5 epochs for
        classification, 5000 steps for regression).
    batch: mini-batch size or ``"full"`` (default: 128 for classification, full for regression).
    seed: the mini-batch order (and the initialization when ``model`` is a string).
    target_nnz, tolerance, min_layers: stop at the first step whose NNZ lies in the band.
    device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (on CUDA, ``SPARSEPROX_CUDA_GRAPHS=1`` in the
        environment turns on step graphs, experimental).
    method: ``"l1"``, ``"l0"``, ``"spred"`` or ``"gmp"``; l1_form: ``"auto"`` (greedy here),
        ``"greedy"`` or ``"lazy"`` (``--l1-form``); optimizer: ``"sgd"``, ``"momentum"``,
        ``"nesterov"``, ``"adam"``, ``"adamw"`` (with momentum, beta1, beta2, adam_eps);
        lr_schedule: ``"constant"``, ``"step"``, ``"cosine"`` (with lr_step_every, lr_gamma,
        lr_min, warmup_steps). weight_decay, loss, finetune, finetune_lr as the flags.
    distributed: True under ``mpirun``: every rank (process) trains this same run on its share of
        each mini-batch, the gradients summed over the ranks each step (README, "Distributed
        training"); every rank returns the same model. comm_timeout: seconds a collective may
        wait before the lost ranks are named (0: 30). See :func:`world`.
    progress: a callable receiving a dict (event, epoch, step, loss, nnz, nnz_per_layer,
        density, samples_per_second, seconds) at most every ``progress_seconds``, or True for
        a progress bar (tqdm when installed, else lines on stderr).

    Ctrl-C stops the run at the next progress poll (every 32 steps, at most 0.2 s apart) and
    raises KeyboardInterrupt; an exception raised by the callback stops it the same way.
    Raises :class:`Error` for bad settings and :class:`DivergedError` when the loss becomes NaN.
    """
    model = _model(model, seed)
    X = _array(X, "X")
    y = _array(y, "y")
    X_test, y_test = _test_pair(test)
    options = _options(lam=lam, lr=lr, epochs=epochs, steps=steps, batch=batch, seed=seed, target_nnz=target_nnz,
                       tolerance=tolerance, min_layers=min_layers, device=device, method=method, optimizer=optimizer,
                       momentum=momentum, beta1=beta1, beta2=beta2, adam_eps=adam_eps, lr_schedule=lr_schedule,
                       lr_step_every=lr_step_every, lr_gamma=lr_gamma, lr_min=lr_min, warmup_steps=warmup_steps,
                       weight_decay=weight_decay, loss=loss, finetune=finetune, finetune_lr=finetune_lr,
                       distributed=distributed, comm_timeout=comm_timeout, l1_form=l1_form)
    options["_classification"] = _is_classification(y)
    callback, close = _progress(progress, options, len(X) if hasattr(X, "__len__") else 0, False)
    try:
        trained, report = _sparseprox._train(model, X, y, X_test, y_test, options, callback,
                                             float(progress_seconds) if progress is not True else 0.1)
    finally:
        close()
    return TrainResult(trained, report)


def search(model: Union[Model, str], X: ArrayLike, y: ArrayLike, *,
           target_nnz: Union[None, int, Sequence[int]] = None,
           target_density: Union[None, float, Sequence[float]] = None,
           strategy: str = "auto",
           allocation: str = "auto",
           tolerance: float = 0.001,
           min_layers: int = 0,
           test: Optional[Tuple[ArrayLike, ArrayLike]] = None,
           lr: float = 0.1,
           epochs: Optional[int] = None,
           steps: Optional[int] = None,
           batch: Union[None, int, str] = None,
           seed: int = 0,
           device: str = "auto",
           method: str = "l1",
           l1_form: str = "auto",
           lambda0: Union[None, float, Sequence[float]] = None,
           lambda1: float = 1e-7,
           max_outer: int = 99,
           adapt_interval: int = 0,
           adapt_rate: float = 0.0,
           adapt_rule: str = "relative",
           adapt_ramp: int = 0,
           start_rows: int = 0,
           ranks_per_run: int = 1,
           stop_run0: bool = True,
           bisect_stalls: bool = True,
           finetune: bool = True,
           finetune_lr: float = 0.0,
           optimizer: str = "sgd",
           momentum: float = 0.9,
           beta1: float = 0.9,
           beta2: float = 0.999,
           adam_eps: float = 1e-8,
           lr_schedule: str = "constant",
           lr_step_every: int = 0,
           lr_gamma: float = 0.1,
           lr_min: float = 0.0,
           warmup_steps: int = 0,
           weight_decay: float = 0.0,
           loss: Optional[str] = None,
           distributed: bool = False,
           comm_timeout: float = 0.0,
           progress: Progress = None,
           progress_seconds: float = 2.0) -> SearchResult:
    """Chooses lambda (or one lambda per layer) so that the network ends with the nonzero count
    asked for (Algorithms 1 and 2), as ``sparseprox search`` does.

    target_nnz: one total, or one count per weight layer; or target_density: a fraction of the
        weights, one value or one per layer (exactly one of the two).
    strategy: ``"auto"`` (the default: ``"adaptive"`` for l1 with one total target, else
        ``"paper"``), ``"paper"`` (every run from the initialization), ``"warm"`` or
        ``"adaptive"`` (one run, lambda steered online, with adapt_interval (0: 1/100 of the
        budget), adapt_rate, adapt_rule, adapt_ramp; allocation ``"auto"``, ``"magnitude"`` or
        ``"uniform"`` shares one total target among the layers). l1_form: ``"auto"`` (lazy for
        the adaptive strategy with one total target, greedy otherwise), ``"greedy"`` or ``"lazy"`` (``--l1-form``). tolerance, min_layers: the band. lambda0, lambda1, max_outer: the search's
        bracket and budget of runs; steps/epochs are the budget of one run. start_rows: the
        evenly spaced training rows whose gradients give the computed lambda0 (0: all of them for
        ``"paper"`` and ``"warm"``, at most 4096 for ``"adaptive"``).
    finetune: True (the default, ``--no-finetune`` is False): the run in the band trains the
        rest of its budget with the pattern fixed; finetune_lr its learning rate.
    stop_run0: False is ``--no-stop-run0``. bisect_stalls: False is ``--no-bisect-stalls`` (the
        median rule even after a median run that changed no count of the bracket).
    distributed: True under ``mpirun``: the ranks form groups of ranks_per_run ranks (0: one
        group of all ranks), each group training one lambda per round (the parallel search of
        README, "Distributed training"); the adaptive strategy trains its one run over all ranks.
    The rest as in :func:`train`; progress callbacks also receive one dict per run (or
    adaptive interval) with ``event == "iteration"`` and the keys of the report's ``search``
    entries. Never raises for a missed band: check ``result.reached``.
    """
    model = _model(model, seed)
    X = _array(X, "X")
    y = _array(y, "y")
    X_test, y_test = _test_pair(test)
    options = _options(lam=None, lr=lr, epochs=epochs, steps=steps, batch=batch, seed=seed, target_nnz=target_nnz,
                       tolerance=tolerance, min_layers=min_layers, device=device, method=method, optimizer=optimizer,
                       momentum=momentum, beta1=beta1, beta2=beta2, adam_eps=adam_eps, lr_schedule=lr_schedule,
                       lr_step_every=lr_step_every, lr_gamma=lr_gamma, lr_min=lr_min, warmup_steps=warmup_steps,
                       weight_decay=weight_decay, loss=loss, finetune=False, finetune_lr=finetune_lr,
                       distributed=distributed, comm_timeout=comm_timeout, l1_form=l1_form)
    options.update({
        "target_density": _floats(target_density, "target_density"),
        "strategy": str(strategy),
        "allocation": str(allocation),
        "lambda0": _floats(lambda0, "lambda0"),
        "lambda1": float(lambda1),
        "max_outer": _whole(max_outer, "max_outer"),
        "adapt_interval": _whole(adapt_interval, "adapt_interval"),
        "adapt_rate": float(adapt_rate),
        "adapt_rule": str(adapt_rule),
        "adapt_ramp": _whole(adapt_ramp, "adapt_ramp"),
        "start_rows": _whole(start_rows, "start_rows"),
        "ranks_per_run": _whole(ranks_per_run, "ranks_per_run"),
        "stop_run0": bool(stop_run0),
        "bisect_stalls": bool(bisect_stalls),
        "search_finetune": bool(finetune),
        "_classification": _is_classification(y),
    })
    callback, close = _progress(progress, options, len(X) if hasattr(X, "__len__") else 0, True)
    try:
        found, report = _sparseprox._search(model, X, y, X_test, y_test, options, callback,
                                            float(progress_seconds) if progress is not True else 0.1)
    finally:
        close()
    return SearchResult(found, report)


def evaluate(model: Model, X: ArrayLike, y: ArrayLike, device: str = "cpu") -> Dict[str, Optional[float]]:
    """The mean loss (MSE for float targets, cross-entropy for class indices) and, for classes,
    the accuracy of ``model`` on (X, y): ``{"loss": ..., "accuracy": ... or None}``."""
    return model._evaluate(_array(X, "X"), _array(y, "y"), device)

"""The PyTorch side of the benchmarks: the same network, weights copied from the Keras model.

A user who does not pick advgui picks PyTorch with torchattacks, or ART. To compare speed
fairly both sides must compute the same function: :func:`torch_twin` rebuilds a Keras chain
of Conv2D / MaxPooling2D / Flatten / Dropout / Dense layers in PyTorch with the same weights
and :func:`check_same_logits` asserts that the logits agree within 1e-4 before any timing.

Benchmark-only dependencies (not advgui's): ``pip install '.[bench]'`` for CPU torch, then
``pip install --no-deps torchattacks==3.5.1`` (its metadata asks for torchvision and an old
requests; it imports neither for PGD, and PyPI's torchvision does not load beside a CPU torch).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

#: Largest |logit difference| allowed between the Keras model and its PyTorch twin.
LOGIT_TOLERANCE = 1e-4
INSTALL_HINT = "pip install '.[bench]' && pip install --no-deps torchattacks==3.5.1"


def torch_or_reason() -> tuple[Any, str | None]:
    try:
        import torch
    except Exception as err:  # not a project dependency: say why it is not compared
        return None, f"PyTorch not importable ({type(err).__name__}: {err}); {INSTALL_HINT}"
    return torch, None


def torch_twin(keras_model: Any) -> Any:
    """A ``torch.nn.Sequential`` computing the same logits as ``keras_model`` (NCHW input).

    Keras flattens (h, w, c), PyTorch (c, h, w): the first Dense after a Flatten gets its rows
    permuted accordingly. Raises ValueError for a layer it cannot translate.
    """
    import torch
    from torch import nn

    mods: list[Any] = []
    shape: tuple[int, ...] = tuple(keras_model.input_shape[1:])  # (h, w, c)
    after_flatten: tuple[int, ...] | None = None
    for layer in keras_model.layers:
        kind = type(layer).__name__
        weights = [np.asarray(w) for w in layer.get_weights()]
        if kind == "InputLayer":
            continue
        if kind == "Conv2D":
            kh, kw = layer.kernel_size
            if layer.padding == "same" and (kh % 2 == 0 or kw % 2 == 0):
                raise ValueError("even kernels with 'same' padding are not translated")
            pad = (kh // 2, kw // 2) if layer.padding == "same" else (0, 0)
            conv = nn.Conv2d(shape[2], layer.filters, (kh, kw), padding=pad, bias=layer.use_bias)
            conv.weight.data = torch.from_numpy(weights[0].transpose(3, 2, 0, 1).copy())
            if layer.use_bias:
                conv.bias.data = torch.from_numpy(weights[1].copy())
            mods.append(conv)
            h, w = shape[:2]
            if layer.padding != "same":
                h, w = h - kh + 1, w - kw + 1
            shape = (h, w, layer.filters)
            mods += _activation(layer)
        elif kind == "MaxPooling2D":
            ph, pw = layer.pool_size
            mods.append(nn.MaxPool2d((ph, pw)))
            shape = (shape[0] // ph, shape[1] // pw, shape[2])
        elif kind == "Flatten":
            mods.append(nn.Flatten())
            after_flatten = shape
            shape = (int(np.prod(shape)),)
        elif kind == "Dropout":
            mods.append(nn.Dropout(layer.rate))
        elif kind == "Dense":
            kernel = weights[0]
            if after_flatten is not None:  # rows in Keras's (h, w, c) order -> (c, h, w)
                h, w, c = after_flatten
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
                after_flatten = None
            dense = nn.Linear(kernel.shape[0], layer.units, bias=layer.use_bias)
            dense.weight.data = torch.from_numpy(kernel.T.copy())
            if layer.use_bias:
                dense.bias.data = torch.from_numpy(weights[1].copy())
            mods.append(dense)
            shape = (layer.units,)
            if getattr(layer.activation, "__name__", "") != "softmax":  # logits, as attacked
                mods += _activation(layer)
        else:
            raise ValueError(f"no PyTorch translation for a {kind} layer")
    return nn.Sequential(*mods).eval()


def _activation(layer: Any) -> list[Any]:
    from torch import nn

    name = getattr(layer.activation, "__name__", "linear")
    if name == "relu":
        return [nn.ReLU()]
    if name == "linear":
        return []
    raise ValueError(f"no PyTorch translation for activation {name!r}")


def nchw(x: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(x: Any) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy().transpose(0, 2, 3, 1))


def check_same_logits(keras_logits_model: Any, twin: Any, x: np.ndarray) -> float:
    """The largest |logit difference| on ``x``; AssertionError beyond :data:`LOGIT_TOLERANCE`."""
    import torch

    ref = np.asarray(keras_logits_model(x, training=False))
    with torch.no_grad():
        got = twin(nchw(x)).numpy()
    diff = float(np.max(np.abs(ref - got)))
    assert diff <= LOGIT_TOLERANCE, f"PyTorch twin's logits differ by {diff:.2e}"
    return diff


def torchattacks_pgd(twin: Any, x: np.ndarray, y: np.ndarray, batch_size: int) -> np.ndarray:
    """torchattacks' PGD-40 (eps 0.3, step 0.01, one random start) in batches; NHWC out."""
    import torch
    import torchattacks

    attack = torchattacks.PGD(twin, eps=0.3, alpha=0.01, steps=40, random_start=True)
    out = []
    for i in range(0, len(x), batch_size):
        xb = nchw(x[i : i + batch_size])
        yb = torch.from_numpy(y[i : i + batch_size].astype(np.int64))
        out.append(nhwc(attack(xb, yb)))
    return np.concatenate(out)


def train_torch(
    twin: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    schedule: Any,
    seed: int = 0,
) -> float:
    """A plain PyTorch loop of advgui's recipe (Adam, the same per-step learning rate, the same
    shuffling); returns the training seconds. The data are one tensor, indexed per batch."""
    import torch

    torch.manual_seed(seed)
    twin.train()
    xs = nchw(x)
    ys = torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(twin.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    n = len(x)
    steps = math.ceil(n / batch_size)
    total = steps * epochs
    step = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        for b in range(steps):
            idx = order[b * batch_size : (b + 1) * batch_size]
            for group in opt.param_groups:
                group["lr"] = schedule(step, total)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(twin(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
            step += 1
    seconds = time.perf_counter() - t0
    twin.eval()
    return seconds


def torch_accuracy(twin: Any, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        pred = np.concatenate(
            [twin(nchw(x[i : i + 1000])).argmax(1).numpy() for i in range(0, len(x), 1000)]
        )
    return float(np.mean(pred == y))

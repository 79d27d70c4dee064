"""Test oracle of the batched SGD engine: a plain per-trial PyTorch loop.

:func:`train_sgd_reference` trains one ``nn.Linear`` with ``torch.optim.SGD``
and ``CosineAnnealingLR`` per trial, minibatch by minibatch, from the same init
and the same shuffles as :func:`pytest_metatrace.analysis.sgd.train_sgd_batched`;
the two must agree up to float round-off.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from pytest_metatrace.analysis.sgd import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_MOMENTUM,
    _draw_init,
    _training_rng,
    resolve_device,
)


def train_sgd_reference(
    features: ArrayLike,
    labels: ArrayLike,
    lr: float,
    weight_decay: float,
    *,
    seed: int,
    n_classes: int,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    momentum: float = DEFAULT_MOMENTUM,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """One probe trained the plain way: ``nn.Linear`` + ``torch.optim.SGD`` + ``CosineAnnealingLR``.

    The sequential reference for :func:`train_sgd_batched` (same init, same
    shuffles); used by the tests and the benchmark. ``features`` are
    already normalized, ``(N, D)``. Returns ``weight`` ``(D, C)`` and ``bias`` ``(C,)``.
    """
    dev = resolve_device(device)
    x = torch.as_tensor(np.asarray(features, dtype=np.float32)).to(dev)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(dev)
    n, dim = x.shape
    rng = _training_rng(seed)
    w0, b0 = _draw_init(rng, dim, n_classes)
    model = torch.nn.Linear(dim, n_classes).to(dev)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w0))
        model.bias.copy_(torch.from_numpy(b0))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.0)
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(n)).to(dev)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
        scheduler.step()
    return (
        model.weight.detach().T.contiguous().cpu().numpy(),
        model.bias.detach().cpu().numpy().copy(),
    )

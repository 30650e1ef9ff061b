"""Proxy tasks: data built locally and deterministically, population models, budgets.

A `Task` owns (1) its data, generated from a fixed data seed with no network (the training seed of a
member only changes its initial weights and data order, so every member of every run sees the same
examples), (2) a population model factory, (3) a budget (steps, batch, learning rate) and the rejection
check's step and threshold.  Every task's metric is test accuracy (higher is better); `chance` is the
accuracy of guessing, which the score and the rejection protocol are measured against.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actsearch.population import (Member, PopConv, PopEmbedding, PopLayerNorm, PopLinear, PopulationModel)

# Bump when a task's data, model, budget or training numerics change: it keys the baseline cache.
# 2: a logsumexp cross-entropy (same maths, different rounding).
TASK_VERSION = 2


@dataclass(frozen=True)
class TaskData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Budget:
    steps: int
    batch_size: int
    lr: float
    check_step: int  # the "still at chance?" rejection check runs after this many steps


class Task:
    name: str = ""
    description: str = ""
    metric: str = "accuracy"
    n_classes: int = 10
    budget: Budget
    ignore_index: int = -100  # targets equal to this are not scored (the LM's first positions)

    @property
    def chance(self) -> float:
        return 1.0 / self.n_classes

    @property
    def chance_threshold(self) -> float:
        """Accuracy at or below which a member is 'still at chance' at the check step."""
        return self.chance + 0.5 * self.chance

    def data(self) -> TaskData:  # cached by subclasses
        raise NotImplementedError

    def build(self, members: Sequence[Member]) -> PopulationModel:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


# --------------------------------------------------------------------------------------------- MNIST-1D

@functools.lru_cache(maxsize=1)
def mnist1d_data() -> TaskData:
    """MNIST-1D as the paper defines it (4000 train / 1000 test, length 40), generated locally:
    `make_dataset(get_dataset_args())`, never the downloading `get_dataset`.  make_dataset seeds numpy's
    and random's global generators; their state is restored."""
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return TaskData(f(d["x"]), torch.tensor(d["y"]).long(), f(d["x_test"]), torch.tensor(d["y_test"]).long())


class MLP(PopulationModel):
    def __init__(self, members, sizes=(40, 100, 100, 10)):
        super().__init__(members)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(PopLinear(self.ctx, a, b))
            if i < len(sizes) - 2:
                layers.append(self.act())
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # (K, B, 40) -> (K, B, 10)
        return self.net(x)


class MNIST1DMLP(Task):
    name = "mnist1d-mlp"
    description = "MNIST-1D (generated locally), MLP 40-100-100-10, Adam"
    budget = Budget(steps=1500, batch_size=100, lr=2e-3, check_step=150)
    sizes = (40, 100, 100, 10)

    def data(self):
        return mnist1d_data()

    def build(self, members):
        return MLP(members, sizes=self.sizes)


class MNIST1DMLPDeep(MNIST1DMLP):
    """A held-out validation task, larger than the search tasks: mnist1d-mlp's data and budget with a
    plain (no residuals, no normalization) MLP of 5 hidden layers of 128, so the activation's effect on
    gradient flow through depth shows.  Not part of `all`."""
    name = "mnist1d-mlp-deep"
    description = "MNIST-1D (generated locally), MLP 40-128x5-10 (5 hidden layers, no residuals), Adam"
    sizes = (40, 128, 128, 128, 128, 128, 10)


class CNN1D(PopulationModel):
    def __init__(self, members, channels: int = 16):
        super().__init__(members)
        c = channels
        self.conv1 = PopConv(self.ctx, 1, 1, c, 5, stride=2, padding=2)     # 40 -> 20
        self.act1 = self.act()
        self.conv2 = PopConv(self.ctx, 1, c, c, 3, stride=2, padding=1)     # 20 -> 10
        self.act2 = self.act()
        self.conv3 = PopConv(self.ctx, 1, c, c, 3, stride=1, padding=1)     # 10 -> 10
        self.act3 = self.act()
        self.head = PopLinear(self.ctx, c * 10, 10)

    def forward(self, x):  # (K, B, 40)
        h = self.act1(self.conv1(x.unsqueeze(2)))
        h = self.act2(self.conv2(h))
        h = self.act3(self.conv3(h))
        return self.head(h.flatten(2))


class MNIST1DCNN(Task):
    name = "mnist1d-cnn"
    description = "MNIST-1D (generated locally), 1-D conv net 3x(conv16)+linear, Adam"
    budget = Budget(steps=1000, batch_size=100, lr=3e-3, check_step=100)

    def data(self):
        return mnist1d_data()

    def build(self, members):
        return CNN1D(members)


# --------------------------------------------------------------------------------------------- digits

@functools.lru_cache(maxsize=1)
def digits_data(data_seed: int = 0, test_fraction: float = 0.3) -> TaskData:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), pixels scaled to [0, 1] then
    standardised with the training split's statistics; the split is fixed by `data_seed`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(data_seed))
    n_test = int(round(len(y) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return TaskData(x[train], y[train], x[test], y[test])


class CNN2D(PopulationModel):
    def __init__(self, members, c1: int = 8, c2: int = 16):
        super().__init__(members)
        self.conv1 = PopConv(self.ctx, 2, 1, c1, 3, padding=1)              # 8x8
        self.act1 = self.act()
        self.conv2 = PopConv(self.ctx, 2, c1, c2, 3, stride=2, padding=1)   # 4x4
        self.act2 = self.act()
        self.head = PopLinear(self.ctx, c2 * 16, 10)

    def forward(self, x):  # (K, B, 8, 8)
        h = self.act1(self.conv1(x.unsqueeze(2)))
        h = self.act2(self.conv2(h))
        return self.head(h.flatten(2))


class DigitsCNN(Task):
    name = "digits-cnn"
    description = "scikit-learn 8x8 digits (bundled), 2-D conv net conv8-conv16(stride 2)+linear, Adam"
    budget = Budget(steps=300, batch_size=64, lr=2e-3, check_step=60)

    def data(self):
        return digits_data()

    def build(self, members):
        return CNN2D(members)


# --------------------------------------------------------------------------------------------- tiny LM

@functools.lru_cache(maxsize=2)
def markov_language_data(vocab: int = 32, length: int = 24, n_train: int = 4096, n_test: int = 512,
                         noise: float = 0.2, data_seed: int = 0) -> TaskData:
    """A second-order Markov language: a random table T maps each pair of previous tokens to the next
    one, which follows the table with probability 1 - noise and is uniform otherwise.  Predicting it
    takes attention to the two previous positions and an MLP that stores the vocab**2-entry table,
    which is where the activation acts.  Best possible accuracy: 1 - noise + noise/vocab (0.806)."""
    g = torch.Generator().manual_seed(data_seed)
    table = torch.randint(vocab, (vocab, vocab), generator=g)

    def sample(n):
        seq = torch.empty(n, length, dtype=torch.long)
        seq[:, :2] = torch.randint(vocab, (n, 2), generator=g)
        for t in range(2, length):
            follow = table[seq[:, t - 2], seq[:, t - 1]]
            rand = torch.randint(vocab, (n,), generator=g)
            seq[:, t] = torch.where(torch.rand(n, generator=g) < noise, rand, follow)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        y[:, :1] = -100  # the first target has one token of context; the table needs two
        return x, y

    xtr, ytr = sample(n_train)
    xte, yte = sample(n_test)
    return TaskData(xtr, ytr, xte, yte)


class TinyTransformer(PopulationModel):
    """Pre-LN causal transformer; the activation sits in the MLP block: act(x W1) W2, or with `glu`
    act(x W) * (x V) W2 (hidden width 2/3 of the plain MLP's, so the parameter counts match)."""

    def __init__(self, members, vocab: int, length: int, dim: int = 64, layers: int = 2, heads: int = 4,
                 glu: bool = False):
        super().__init__(members)
        self.heads, self.glu = heads, glu
        hidden = 4 * dim if not glu else (8 * dim) // 3
        self.tok = PopEmbedding(self.ctx, vocab, dim)
        self.pos = PopEmbedding(self.ctx, length, dim)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            b = nn.Module()
            b.ln1, b.qkv, b.proj = PopLayerNorm(self.ctx, dim), PopLinear(self.ctx, dim, 3 * dim), PopLinear(self.ctx, dim, dim)
            b.ln2, b.up = PopLayerNorm(self.ctx, dim), PopLinear(self.ctx, dim, hidden)
            b.gate = PopLinear(self.ctx, dim, hidden) if glu else None
            b.act, b.down = self.act(), PopLinear(self.ctx, hidden, dim)
            self.blocks.append(b)
        self.ln_f = PopLayerNorm(self.ctx, dim)
        self.head = PopLinear(self.ctx, dim, vocab)

    def forward(self, idx):  # (K, B, T) -> (K, B, T, vocab)
        K, B, T = idx.shape
        h = self.tok(idx) + self.pos(torch.arange(T).expand(K, T)).unsqueeze(1)
        for b in self.blocks:
            q, k, v = b.qkv(b.ln1(h)).chunk(3, dim=-1)
            split = lambda t: t.reshape(K * B, T, self.heads, -1).transpose(1, 2)  # noqa: E731
            a = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
            h = h + b.proj(a.transpose(1, 2).reshape(K, B, T, -1))
            z = b.ln2(h)
            u = b.act(b.up(z))
            if b.gate is not None:
                u = u * b.gate(z)
            h = h + b.down(u)
        return self.head(self.ln_f(h))


class TinyLM(Task):
    name = "tiny-lm"
    description = "2-layer transformer (width 64, MLP 256) on a generated order-2 Markov language, Adam"
    n_classes = 32
    budget = Budget(steps=400, batch_size=32, lr=3e-3, check_step=100)
    glu = False

    def data(self):
        return markov_language_data(vocab=self.n_classes)

    def build(self, members):
        return TinyTransformer(members, vocab=self.n_classes, length=23, glu=self.glu)


class TinyLMGLU(TinyLM):
    name = "tiny-lm-glu"
    description = "tiny-lm with a GLU MLP block: act(xW) * (xV), hidden 170"
    glu = True


TASKS: dict[str, Task] = {t.name: t for t in (MNIST1DMLP(), MNIST1DCNN(), DigitsCNN(), TinyLM(), TinyLMGLU(),
                                              MNIST1DMLPDeep())}
DEFAULT_TASKS = ("mnist1d-mlp", "mnist1d-cnn", "digits-cnn", "tiny-lm")  # what `--tasks all` runs


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)} (or 'all' for "
                         f"{', '.join(DEFAULT_TASKS)})") from None


def resolve_tasks(names: Optional[Sequence[str]]) -> list[Task]:
    if not names:
        return [TASKS["mnist1d-mlp"]]
    out: list[Task] = []
    for n in names:
        for name in (DEFAULT_TASKS if n == "all" else [n]):
            t = get_task(name)
            if t not in out:
                out.append(t)
    return out

"""Proxy tasks: data built locally and deterministically, population models, budgets.

A `Task` owns (1) its data, generated from a fixed data seed with no network (the training seed of a
member only changes its initial weights and data order, so every member of every run sees the same
examples), (2) a population model factory, (3) a budget (steps, batch, learning rate) and the rejection
check's step and threshold.  Every task's metric is test accuracy (higher is better); `chance` is the
accuracy of guessing, which the score and the rejection protocol are measured against.

Two kinds of task (`Task.kind`): "activation" tasks train a scalar activation wherever a model has one;
"layer" tasks (`LayerTask`) train a normalization-activation layer in every slot where a BatchNorm+ReLU
pair would be (actsearch.pop_layers).  A task makes its members' units (`make_unit`: an activation or a
layer) and refuses the other kind; it names its `reference` baseline (the score's zero) and its default
`baselines`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from actsearch.pop_layers import LayerPopulationModel, LayerSettings, make_layer
from actsearch.population import (Member, PopConv, PopEmbedding, PopLayerNorm, PopLinear, PopulationModel,
                                  make_activation)

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
    kind: str = "activation"  # what its members train: "activation" (scalar) or "layer" (LayerTask)
    reference: str = "relu"   # the baseline the score is measured against
    baselines: tuple = ("relu", "gelu", "silu")  # evaluate's default baselines
    metric: str = "accuracy"
    n_classes: int = 10
    budget: Budget
    ignore_index: int = -100  # targets equal to this are not scored (the LM's first positions)

    def make_unit(self, spec):
        """What a member of this task applies, from a built-in name or a Candidate (a ValueError for a
        unit of the other kind, or an unknown name)."""
        return make_activation(spec)

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


# --------------------------------------------------------------------------------------------- layer tasks

class LayerTask(Task):
    """A task whose models have a layer slot wherever a BatchNorm+ReLU pair would be; every slot of a
    member applies that member's layer (actsearch.pop_layers.PopNormAct), with the task's `settings`."""

    kind = "layer"
    reference = "bn-relu"
    baselines = ("bn-relu", "gn-relu", "bn-silu", "evonorm-b0", "evonorm-s0")

    settings = LayerSettings()  # groups 4, eps 1e-5, momentum 0.1 in every slot

    def make_unit(self, spec):
        return make_layer(spec)


class ResNet1D(LayerPopulationModel):
    """Pre-activation 1-D ResNet: stem conv, blocks (slot, conv3, slot, conv3, + shortcut; a strided
    block's shortcut is a 1x1 conv of the first slot's output), a final slot, global average pool, linear.
    Convolutions before a slot have no bias.  (K, B, 40) -> (K, B, 10)."""

    def __init__(self, members, settings, widths=(16, 32), n_classes: int = 10):
        super().__init__(members, settings)
        ctx, c0 = self.ctx, widths[0]
        self.stem = PopConv(ctx, 1, 1, c0, 5, padding=2, bias=False)
        self.blocks = nn.ModuleList()
        c_in = c0
        for i, c in enumerate(widths):
            b = nn.Module()
            stride = 1 if i == 0 else 2
            b.n1, b.conv1 = self.norm_act(c_in), PopConv(ctx, 1, c_in, c, 3, stride=stride, padding=1, bias=False)
            b.n2, b.conv2 = self.norm_act(c), PopConv(ctx, 1, c, c, 3, padding=1, bias=False)
            b.short = PopConv(ctx, 1, c_in, c, 1, stride=stride, bias=False) if stride != 1 or c_in != c else None
            self.blocks.append(b)
            c_in = c
        self.final = self.norm_act(c_in)
        self.head = PopLinear(ctx, c_in, n_classes)

    def forward(self, x):
        h = self.stem(x.unsqueeze(2))
        for b in self.blocks:
            a = b.n1(h)
            h = b.conv2(b.n2(b.conv1(a))) + (h if b.short is None else b.short(a))
        return self.head(self.final(h).mean(-1))


class MNIST1DResNetLayer(LayerTask):
    name = "mnist1d-resnet-layer"
    description = ("MNIST-1D (generated locally), pre-activation 1-D ResNet (stem conv16, blocks 16 and 32 "
                   "stride 2, 5 layer slots), Adam")
    budget = Budget(steps=400, batch_size=64, lr=3e-3, check_step=60)

    def data(self):
        return mnist1d_data()

    def build(self, members):
        return ResNet1D(members, self.settings)


class MobileNet2D(LayerPopulationModel):
    """MobileNet-style: stem conv3x3 + slot, then depthwise-separable blocks (depthwise conv3x3 + slot,
    pointwise conv1x1 + slot), global average pool, linear.  (K, B, 8, 8) -> (K, B, 10)."""

    def __init__(self, members, settings, stem: int = 16, blocks=((32, 1), (64, 2)), n_classes: int = 10):
        super().__init__(members, settings)
        ctx = self.ctx
        self.stem, self.n0 = PopConv(ctx, 2, 1, stem, 3, padding=1, bias=False), self.norm_act(stem)
        self.blocks = nn.ModuleList()
        c = stem
        for c_out, stride in blocks:
            b = nn.Module()
            b.dw, b.n1 = PopConv(ctx, 2, c, c, 3, stride=stride, padding=1, groups=c, bias=False), self.norm_act(c)
            b.pw, b.n2 = PopConv(ctx, 2, c, c_out, 1, bias=False), self.norm_act(c_out)
            self.blocks.append(b)
            c = c_out
        self.head = PopLinear(ctx, c, n_classes)

    def forward(self, x):
        h = self.n0(self.stem(x.unsqueeze(2)))
        for b in self.blocks:
            h = b.n2(b.pw(b.n1(b.dw(h))))
        return self.head(h.mean((-2, -1)))


class DigitsMobileNetLayer(LayerTask):
    name = "digits-mobilenet-layer"
    description = ("scikit-learn 8x8 digits (bundled), MobileNet-style: stem conv16, depthwise-separable "
                   "blocks to 32 and 64 (stride 2), 5 layer slots, Adam")
    budget = Budget(steps=300, batch_size=64, lr=3e-3, check_step=60)

    def data(self):
        return digits_data()

    def build(self, members):
        return MobileNet2D(members, self.settings)


class PlainCNN2D(LayerPopulationModel):
    """Plain CNN: conv3x3 + slot, conv3x3 stride 2 + slot, conv3x3 + slot, flatten, linear."""

    def __init__(self, members, settings, widths=(16, 32, 32), n_classes: int = 10):
        super().__init__(members, settings)
        ctx = self.ctx
        c1, c2, c3 = widths
        self.conv1, self.n1 = PopConv(ctx, 2, 1, c1, 3, padding=1, bias=False), self.norm_act(c1)            # 8x8
        self.conv2, self.n2 = PopConv(ctx, 2, c1, c2, 3, stride=2, padding=1, bias=False), self.norm_act(c2)  # 4x4
        self.conv3, self.n3 = PopConv(ctx, 2, c2, c3, 3, padding=1, bias=False), self.norm_act(c3)
        self.head = PopLinear(ctx, c3 * 16, n_classes)

    def forward(self, x):
        h = self.n1(self.conv1(x.unsqueeze(2)))
        h = self.n3(self.conv3(self.n2(self.conv2(h))))
        return self.head(h.flatten(2))


class DigitsCNNLayer(LayerTask):
    name = "digits-cnn-layer"
    description = "scikit-learn 8x8 digits (bundled), plain CNN conv16-conv32(stride 2)-conv32+linear, 3 layer slots, Adam"
    budget = Budget(steps=300, batch_size=64, lr=3e-3, check_step=60)

    def data(self):
        return digits_data()

    def build(self, members):
        return PlainCNN2D(members, self.settings)


TASKS: dict[str, Task] = {t.name: t for t in (MNIST1DMLP(), MNIST1DCNN(), DigitsCNN(), TinyLM(), TinyLMGLU(),
                                              MNIST1DMLPDeep(), MNIST1DResNetLayer(), DigitsMobileNetLayer(),
                                              DigitsCNNLayer())}
DEFAULT_TASKS = ("mnist1d-mlp", "mnist1d-cnn", "digits-cnn", "tiny-lm")  # what `--tasks all` runs
LAYER_TASKS = ("mnist1d-resnet-layer", "digits-mobilenet-layer", "digits-cnn-layer")  # `--tasks layers`
GROUPS = {"all": DEFAULT_TASKS, "layers": LAYER_TASKS}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)} (or 'all' for "
                         f"{', '.join(DEFAULT_TASKS)}, 'layers' for {', '.join(LAYER_TASKS)})") from None


def resolve_tasks(names: Optional[Sequence[str]]) -> list[Task]:
    if not names:
        return [TASKS["mnist1d-mlp"]]
    out: list[Task] = []
    for n in names:
        for name in GROUPS.get(n, [n]):
            t = get_task(name)
            if t not in out:
                out.append(t)
    return out


def task_kind(tasks: Sequence[Task]) -> str:
    """The one kind of `tasks`; a ValueError naming both groups when they mix activation and layer tasks."""
    kinds = {t.kind for t in tasks}
    if len(kinds) > 1:
        by = {k: [t.name for t in tasks if t.kind == k] for k in sorted(kinds)}
        raise ValueError("the tasks mix kinds, which one candidate cannot train on: "
                         + "; ".join(f"{k} tasks {', '.join(v)}" for k, v in by.items()))
    return kinds.pop() if kinds else "activation"


def task_defaults(names: Sequence[str]) -> tuple[str, str, tuple]:
    """(kind, reference baseline, default baselines) shared by the tasks `names` (names or groups, as
    `resolve_tasks` takes them): ("activation", "relu", ("relu", "gelu", "silu")) or ("layer", "bn-relu",
    the five layer baselines).  A ValueError when the tasks mix kinds or a name is unknown."""
    tasks = resolve_tasks(names)
    kind = task_kind(tasks)
    return kind, tasks[0].reference, tuple(tasks[0].baselines)

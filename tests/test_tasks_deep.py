"""mnist1d-mlp-deep: the held-out validation task (a deeper, wider MLP than the search tasks' models)."""
from __future__ import annotations

import math

import pytest
import torch

from actsearch.population import Member, PopLinear, make_activation
from actsearch.tasks import DEFAULT_TASKS, TASKS, get_task, resolve_tasks
from actsearch.training import train_population

NAME = "mnist1d-mlp-deep"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def n_params(task, members) -> int:
    """Parameters of one member: every parameter tensor has the member axis first."""
    model = task.build(members)
    return sum(p[0].numel() for p in model.parameters())


def test_registered_but_not_in_all():
    assert NAME in TASKS and get_task(NAME) is TASKS[NAME]
    assert NAME not in DEFAULT_TASKS
    assert NAME not in [t.name for t in resolve_tasks(["all"])]
    assert [t.name for t in resolve_tasks([NAME])] == [NAME]


def test_larger_than_mnist1d_mlp_on_the_same_data():
    deep, mlp = get_task(NAME), get_task("mnist1d-mlp")
    assert deep.data() is mlp.data()  # the same (cached) MNIST-1D
    assert deep.chance == mlp.chance == pytest.approx(0.1)
    members = [Member(make_activation("relu"), 0)]
    # 40-128x5-10: 40*128+128 + 4*(128*128+128) + 128*10+10
    assert n_params(deep, members) == 72586
    assert n_params(deep, members) > 4 * n_params(mlp, members)
    model = deep.build(members)
    assert sum(isinstance(m, PopLinear) for m in model.modules()) == 6  # 5 hidden layers + head


def test_builds_a_population_and_trains_briefly():
    task = get_task(NAME)
    members = [Member(make_activation("relu"), 0), Member(make_activation("gelu"), 1)]
    d = task.data()
    model = task.build(members)
    out = model(d.x_train[:6].expand(2, *d.x_train[:6].shape))
    assert tuple(out.shape) == (2, 6, 10) and torch.isfinite(out).all()

    res = train_population(task, members, steps=30)
    assert [r.activation for r in res] == ["relu", "gelu"] and [r.seed for r in res] == [0, 1]
    for r in res:
        assert r.rejected is None and r.steps == 30
        assert math.isfinite(r.train_loss) and math.isfinite(r.test_loss)
        assert 0.0 <= r.accuracy <= 1.0

"""Train a population of members on a task, with the rejection protocols.

`train_population(task, members)` trains K networks at once (see population.py) and returns one
`MemberResult` per member, in the order given.  Training a member alone is the same call with one
member; the results agree to float tolerance (tests/test_population.py).

Rejection (EvoNorm-style), checked while training:
  * non-finite loss: a member whose training loss is NaN/Inf at any step stops there;
  * still at chance: at `budget.check_step` (when the run is longer than that) a member whose accuracy on the first 512 training
    examples is <= `task.chance_threshold` stops.
A stopped member is dropped from the population (its slices of the weights and of Adam's state are
removed), so the others continue exactly as before and the remaining steps cost nothing for it;
`saved_s` estimates the time not spent, at the population's measured cost per member-step.

Layer tasks (task.kind "layer") train the same way with layers in their slots (actsearch.pop_layers):
accuracy is measured in eval mode, so batch moments are the running averages; a layer slot runs its
kernels uncompiled in runs shorter than FUSE_MIN_STEPS (a compile is not repaid) and in evaluation passes.

Determinism: every random draw comes from per-member torch.Generators seeded by the member's seed
(weights) or derived from it (data order); the data are generated from fixed seeds.  With the same
torch build and thread count the same members give bit-identical results.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from actsearch.pop_layers import Layer
from actsearch.population import Member, MemberwiseModule, PopActivation
from actsearch.tasks import Task

CHECK_EXAMPLES = 512
FUSE_MIN_STEPS = 200
EVAL_CHUNK = 512


@dataclass
class MemberResult:
    activation: str          # Activation.key: built-in name or candidate id
    seed: int
    accuracy: float          # test accuracy; chance for a rejected member
    test_loss: float         # NaN for a rejected member
    train_loss: float        # mean training loss over the last 10% of steps run
    steps: int               # steps actually trained
    wall_s: float            # this member's share of the population's wall time
    rejected: Optional[str] = None
    saved_s: float = 0.0
    curve: list = field(default_factory=list)  # (step, mean training loss of the last interval)
    # trained values of the member's learnable activation parameters, {name: [one entry per layer]}: a
    # float for a scalar parameter (activation tasks), a summary {mean, std, min, q25, median, q75, max}
    # over channels for a per-channel one (layer tasks); empty for built-ins and rejected members
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


PARAM_QUANTILES = (("min", 0.0), ("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("max", 1.0))


def _channel_summary(v: torch.Tensor) -> dict:
    """Summary of one member's per-channel values of a parameter in one layer."""
    v = v.detach().double()
    q = torch.quantile(v, torch.tensor([f for _, f in PARAM_QUANTILES], dtype=torch.float64))
    return {"mean": float(v.mean()), "std": float(v.std()) if v.numel() > 1 else 0.0,
            **{k: float(x) for (k, _), x in zip(PARAM_QUANTILES, q)}}


def trained_params(model) -> list[dict]:
    """For each member at its current position in `model`: {parameter name: [value per layer]} of its
    activation's (or layer's) learnable formula parameters, layers in the model's module order.  A
    PopActivation holds one scalar per member and parameter; a layer slot's candidate (LayerModule) one
    value per channel, summarized (`_channel_summary`)."""
    from actsearch.pop_layers import PopNormAct

    out: list[dict] = [{} for _ in model.members]
    for module in model.modules():
        if isinstance(module, PopActivation):
            for (act, a, b), ps in zip(module.runs, module.run_params):
                for (name, _), p in zip(act.params, ps):
                    vals = p.detach().double().tolist()
                    for i in range(b - a):
                        out[a + i].setdefault(name, []).append(float(vals[i]))
        elif isinstance(module, PopNormAct):
            for (layer, a, b), unit in zip(module.runs, module.units):
                if layer.candidate is None:
                    continue
                for name in layer.candidate.params:
                    p = unit._parameters[name].detach().view(b - a, -1)
                    for i in range(b - a):
                        out[a + i].setdefault(name, []).append(_channel_summary(p[i]))
    return out


def _data_order(seed: int, n: int, total: int) -> torch.Tensor:
    """Indices of `total` training draws: consecutive random permutations of range(n) (epochs)."""
    g = torch.Generator().manual_seed(int(seed) * 7919 + 1)
    epochs = math.ceil(total / n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])[:total]


def _member_losses(task: Task, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per member: logits (K, B, ..., C), y (K, B, ...) -> (K,)."""
    K, C = logits.shape[0], logits.shape[-1]
    flat, target = logits.reshape(-1, C), y.reshape(-1)
    valid = target != task.ignore_index
    # cross-entropy as logsumexp - logit of the target: the same value as F.cross_entropy, but ATen's
    # log_softmax over a last dimension of 10 classes is slow on CPU (measured 350 vs ~100 us forward
    # on (4800, 10)), and a population pays it every step
    picked = flat.gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    per = torch.where(valid, flat.logsumexp(1) - picked, 0.0).view(K, -1)
    return per.sum(1) / valid.view(K, -1).sum(1).clamp_min(1)


@torch.no_grad()
def _accuracy_and_loss(task: Task, model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member accuracy and mean loss on a shared data set x (N, ...), y (N, ...), in eval mode (layer
    slots normalize with their running averages of batch moments and leave them unchanged)."""
    K = len(model.members)
    acts = [(m, m.compile_candidates) for m in model.modules() if isinstance(m, MemberwiseModule)]
    for m, _ in acts:  # a handful of calls: not worth compiling a candidate's op for (fused kernels are)
        m.compile_candidates = False
    model.eval()
    try:
        return _accuracy_and_loss_chunks(task, model, x, y, K)
    finally:
        model.train()
        for m, before in acts:
            m.compile_candidates = before


def _accuracy_and_loss_chunks(task, model, x, y, K):
    correct = torch.zeros(K, dtype=torch.float64)
    loss = torch.zeros(K, dtype=torch.float64)
    count = 0
    for i in range(0, len(x), EVAL_CHUNK):
        xb = x[i:i + EVAL_CHUNK].expand(K, *x[i:i + EVAL_CHUNK].shape)
        yb = y[i:i + EVAL_CHUNK].expand(K, *y[i:i + EVAL_CHUNK].shape)
        logits = model(xb)
        valid = yb != task.ignore_index
        hit = (logits.argmax(-1) == yb) & valid
        correct += hit.reshape(K, -1).sum(1).double()
        n_valid = valid.reshape(K, -1).sum(1)
        loss += _member_losses(task, logits, yb).double() * n_valid.double()
        count += int(n_valid[0])
    return correct / count, loss / count


def train_population(task: Task, members: Sequence[Member], steps: Optional[int] = None,
                     check_step: Optional[int] = None, fuse: Optional[bool] = None,
                     progress: Optional[Callable[[int, int], None]] = None) -> list[MemberResult]:
    """Train `members` on `task` for `steps` (default: the task's budget).  `progress(done, total)` is
    called with member-steps done so far.  `fuse` applies all candidates' activations as one compiled
    population kernel per layer (default: with >= 2 distinct candidates and steps >= FUSE_MIN_STEPS);
    `fuse=False` runs each candidate's own fused op (compiled by its CompilePolicy)."""
    if not members:
        return []
    steps = task.budget.steps if steps is None else int(steps)
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    # The chance check runs at the task's check step when the run goes past it (0 disables it)
    check_step = task.budget.check_step if check_step is None else check_step
    if check_step >= steps:
        check_step = 0
    bad = next((m for m in members if isinstance(m.activation, Layer) != (task.kind == "layer")), None)
    if bad is not None:  # a layer on an activation task, or an activation on a layer task
        what = "a normalization-activation layer" if isinstance(bad.activation, Layer) else "a scalar activation"
        raise ValueError(f"{task.name} is {'a layer' if task.kind == 'layer' else 'an activation'} task and "
                         f"{bad.activation.label!r} is {what}; make members with task.make_unit")
    data = task.data()
    n, bs = len(data.x_train), task.budget.batch_size

    # Members sharing an activation must be contiguous (one activation call per run), and candidates
    # follow the built-ins (one population kernel for all of them): sort stably by (is a candidate,
    # first appearance of the activation), remember where each came from.
    first = {}
    for m in members:
        first.setdefault(m.activation.key, len(first))
    order = sorted(range(len(members)), key=lambda i: (members[i].activation.candidate is not None,
                                                       first[members[i].activation.key]))
    pop = [members[i] for i in order]

    orders = {}
    for m in pop:
        if m.seed not in orders:
            orders[m.seed] = _data_order(m.seed, n, steps * bs).view(steps, bs)
    batch_idx = torch.stack([orders[m.seed] for m in pop], 1)  # (steps, K, B)

    model = task.build(pop)
    n_candidates = len({m.activation.key for m in pop if m.activation.candidate is not None})
    if fuse is None:
        # One graph for several candidates replaces one call (and, on big tensors, one compile) per
        # candidate; a single candidate gains nothing from it (its own fused op is one call already).
        fuse = n_candidates >= 2 and steps >= FUSE_MIN_STEPS
    for module in model.modules():
        if isinstance(module, PopActivation):
            module.fuse_candidates = bool(fuse)
        elif isinstance(module, MemberwiseModule) and steps < FUSE_MIN_STEPS:
            module.compile_candidates = False  # layer slots: a short run does not repay a compile
    # foreach, not fused: fused Adam is faster (0.36 vs 0.99 ms per step for the 48-member MLP) but its
    # vectorized FMA and scalar tail round differently, so a member's weights would depend on where in
    # the population it sits; foreach's ops are exactly rounded, so a member trains bit-identically alone
    opt = torch.optim.Adam(model.parameters(), lr=task.budget.lr, foreach=True)
    alive = list(range(len(pop)))          # population position -> index into `pop`
    results: dict[int, MemberResult] = {}
    loss_hist = torch.zeros(steps, len(pop), dtype=torch.float64)
    x_check, y_check = data.x_train[:CHECK_EXAMPLES], data.y_train[:CHECK_EXAMPLES]
    t0 = time.perf_counter()
    member_steps = 0
    curve_every = max(1, steps // 20)

    def stop(positions: list[int], reasons: list[str], step: int) -> None:
        nonlocal batch_idx
        for pos, reason in zip(positions, reasons):
            i = alive[pos]
            results[i] = MemberResult(pop[i].activation.key, pop[i].seed, task.chance, float("nan"),
                                      float("nan"), step, 0.0, rejected=reason)
        keep = [p for p in range(len(alive)) if p not in set(positions)]
        for p in sorted(positions, reverse=True):
            del alive[p]
        if alive:
            idx = torch.tensor(keep, dtype=torch.long)
            model.keep(idx, opt)
            batch_idx = batch_idx[:, idx]

    for step in range(steps):
        if not alive:
            break
        bi = batch_idx[step]
        xb, yb = data.x_train[bi], data.y_train[bi]
        losses = _member_losses(task, model(xb), yb)
        detached = losses.detach()
        finite = torch.isfinite(detached)
        loss = torch.where(finite, losses, torch.zeros_like(losses)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        member_steps += len(alive)
        loss_hist[step, alive] = detached.double()
        if not bool(finite.all()):
            bad = [p for p in range(len(alive)) if not bool(finite[p])]
            stop(bad, [f"non-finite training loss at step {step + 1}"] * len(bad), step + 1)
        if step + 1 == check_step and alive:
            acc, _ = _accuracy_and_loss(task, model, x_check, y_check)
            low = [p for p in range(len(alive)) if float(acc[p]) <= task.chance_threshold]
            stop(low, [f"accuracy {float(acc[p]):.3f} <= {task.chance_threshold:.3f} (chance "
                       f"{task.chance:.3f}) after {check_step} steps" for p in low], step + 1)
        if progress is not None:
            progress(member_steps, steps * len(pop))

    wall = time.perf_counter() - t0
    per_member_step = wall / max(1, member_steps)
    if alive:
        acc, tloss = _accuracy_and_loss(task, model, data.x_test, data.y_test)
        learned = trained_params(model)
        tail = max(1, steps // 10)
        for pos, i in enumerate(alive):
            hist = loss_hist[:, i]
            curve = [(s + curve_every, float(hist[s:s + curve_every].mean())) for s in range(0, steps, curve_every)]
            results[i] = MemberResult(pop[i].activation.key, pop[i].seed, float(acc[pos]), float(tloss[pos]),
                                      float(hist[steps - tail:].mean()), steps, per_member_step * steps,
                                      curve=curve, params=learned[pos])
    for i, r in results.items():
        if r.rejected:
            r.wall_s = per_member_step * r.steps
            r.saved_s = per_member_step * (steps - r.steps)
    back = {i: results[j] for j, i in enumerate(order)}  # pop position j holds members[order[j]]
    return [back[i] for i in range(len(members))]

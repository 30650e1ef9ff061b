"""Hugging Face drop-in: a standalone module written by `actsearch export` replaces every MLP activation
of a `transformers` GPT-2 built from a small config (nothing downloaded) and the model trains, loss
falling; `actsearch.kernels.swap_activations` finds and replaces the same activations.

transformers is a test-only dependency (the Makefile's setup installs it with --no-deps); where it is
not installed these tests are skipped.
"""
from __future__ import annotations

import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched from a hub

import pytest  # noqa: E402

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from actsearch.cli import app  # noqa: E402
from actsearch.formula import parse_formula  # noqa: E402
from actsearch.kernels import ActivationModule, swap_activations  # noqa: E402

N_LAYER = 2
FORMULA, PARAMS = "x*sigmoid(beta*x)", {"beta": 1.0}


def tiny_gpt2() -> "transformers.GPT2LMHeadModel":
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=N_LAYER, n_embd=64, n_head=2, vocab_size=96, n_positions=32,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def tokens() -> torch.Tensor:
    """A fixed synthetic batch: 8 sequences of 32 tokens, each an arithmetic progression mod 96."""
    start = torch.arange(8).unsqueeze(1) * 5
    return (start + torch.arange(32) * 7) % 96


def train(model, steps: int = 25, lr: float = 3e-3) -> list[float]:
    ids = tokens()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def exported_class(tmp_path):
    """`actsearch export FORMULA -p beta=1 --name HFSwish -o FILE`, loaded with importlib (no actsearch
    import inside the file: it needs only torch)."""
    path = tmp_path / "hf_swish.py"
    r = CliRunner().invoke(app, ["export", FORMULA, "-p", "beta=1.0", "--name", "HFSwish", "-o", str(path)])
    assert r.exit_code == 0, r.output
    spec = importlib.util.spec_from_file_location("hf_swish", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "actsearch" not in mod.__dict__
    return mod.HFSwish


def test_exported_module_in_gpt2_trains_with_falling_loss(exported_class, one_thread):
    model = tiny_gpt2()
    old = type(model.transformer.h[0].mlp.act)
    assert old.__module__.startswith("transformers.")  # GPT-2's own activation (NewGELUActivation)
    for block in model.transformer.h:
        block.mlp.act = exported_class()
    acts = [m for m in model.modules() if isinstance(m, exported_class)]
    assert len(acts) == N_LAYER and not any(isinstance(m, old) for m in model.modules())
    assert all(block.mlp.act is a for block, a in zip(model.transformer.h, acts))

    losses = train(model)
    assert losses[-1] < 0.6 * losses[0], losses  # ~ln(96) = 4.6 at the start
    # the exported activation's parameter is the model's: it got gradients and moved
    betas = [a.beta.item() for a in acts]
    assert all(b != 1.0 for b in betas), betas


def test_swap_activations_on_gpt2(one_thread):
    model = tiny_gpt2()
    old = type(model.transformer.h[0].mlp.act)
    cand = parse_formula(FORMULA, params=PARAMS)
    n = swap_activations(model, lambda _: ActivationModule(cand, compiled=False), types=(old,))
    assert n == N_LAYER
    assert all(isinstance(block.mlp.act, ActivationModule) for block in model.transformer.h)
    assert not any(isinstance(m, old) for m in model.modules())

    ids = tokens()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)
    for block in model.transformer.h:  # gradients reach the activations' parameters and the weights below
        assert block.mlp.act.beta.grad is not None and torch.isfinite(block.mlp.act.beta.grad)
        assert block.mlp.c_fc.weight.grad.abs().sum() > 0
    losses = train(model, steps=10)
    assert losses[-1] < losses[0], losses

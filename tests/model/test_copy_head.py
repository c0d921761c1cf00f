"""`model.copy_head`: the first-token distribution mixed with a pointer over the row's tokens."""

from __future__ import annotations

import math

import pytest
import torch

from hrm.config import ModelConfig
from hrm.model import build_model
from hrm.model.hrm import CopyHead
from hrm.model.inference import run_inference


def test_copy_distribution_by_hand():
    """p(t) = (1 - g) softmax(logits)(t) + g * (attention mass on the positions holding t); a
    token held at two positions gets both positions' mass; the result is normalised."""
    torch.manual_seed(0)
    head = CopyHead(4)
    with torch.no_grad():
        head.gate.bias.fill_(0.0)  # g = 1/2
    logits = torch.randn(1, 2, 6)
    zp, z_H = torch.randn(1, 2, 4), torch.randn(1, 3, 4)
    inputs = torch.tensor([[2, 5, 2]])
    got = head(logits, zp, z_H, inputs).exp()
    att = torch.softmax(head.query(zp) @ head.key(z_H).transpose(1, 2) / 2.0, -1)  # sqrt(4) = 2
    copy = torch.zeros(1, 2, 6)
    copy[..., 2] = att[..., 0] + att[..., 2]
    copy[..., 5] = att[..., 1]
    expected = 0.5 * torch.softmax(logits, -1) + 0.5 * copy
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(1, 2), atol=1e-6)


def test_a_confident_copy_names_a_token_the_row_holds():
    """A gate far open and a query that matches one key: the output is that key's token, a token
    the token head alone gives almost nothing."""
    head = CopyHead(2)
    with torch.no_grad():
        head.query.weight.copy_(torch.eye(2) * 30)
        head.key.weight.copy_(torch.eye(2))
        head.gate.bias.fill_(8.0)
    logits = torch.zeros(1, 1, 10)
    logits[..., 0] = 20.0  # the token head is sure of token 0
    z_H = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = head(logits, torch.tensor([[[0.0, 1.0]]]), z_H, torch.tensor([[7, 3]]))
    assert int(out.argmax(-1)) == 3 and math.exp(float(out[0, 0, 3])) > 0.99


def test_an_untrained_model_with_the_copy_head_still_keeps_every_token():
    cfg = ModelConfig(hidden_size=32, num_heads=2, copy_head=True, learned_positions=False)
    torch.manual_seed(0)
    model = build_model(cfg, 50, 12, "cpu")
    ids = torch.randint(1, 50, (3, 12))
    out = run_inference(model, ids)
    assert torch.equal(out.logits.argmax(-1), ids)
    assert out.logits.exp().sum(-1) == pytest.approx(torch.ones(3, 12), abs=1e-5)

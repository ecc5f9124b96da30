"""Loss heads (`lib.losses`) against independent references.

References: pytorch-metric-learning 2.9 (CosFace, SphereFace with lambda=0, ArcFace, normalized
softmax), a verbatim copy of the SphereFace course report's loss class, and formulas written out
here in numpy (acos-based, so independent of the heads' polynomial / sqrt forms).
Everything numerical is float64 unless the test is about fp32 / bf16.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml
from torch import nn

from lib import losses as L
from lib.errors import DataError

# pytorch-metric-learning's SphereFace builds its binomials through scipy on tensors (numpy 2 warns).
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")

F64 = torch.float64
COSINE_HEADS = ("normsoftmax", "cosine_softmax", "cosface", "cosrelu", "arcface", "sphereface")


# ------------------------------------------------------------------------------------------------
# The SphereFace course report's loss, copied verbatim (seeds/003_*.txt), the reference for
# `course_sphereface`. Do not "fix" it.
# ------------------------------------------------------------------------------------------------
class AngularPenaltySMLoss(nn.Module):
    def __init__(self, in_features, out_features, eps=1e-7, m=None):
        super(AngularPenaltySMLoss, self).__init__()
        self.m = 4.0 if not m else m
        self.in_features = in_features
        self.out_features = out_features
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.eps = eps

    def forward(self, x, labels):
        """
        input shape (N, in_features)
        """
        assert len(x) == len(labels)
        assert torch.min(labels) >= 0
        assert torch.max(labels) < self.out_features

        for W in self.fc.parameters():
            W = F.normalize(W, p=2, dim=1)

        x = F.normalize(x, p=2, dim=1)

        wf = self.fc(x)

        numerator = torch.cos(
            self.m
            * torch.acos(
                torch.clamp(
                    torch.diagonal(wf.transpose(0, 1)[labels]),
                    -1.0 + self.eps,
                    1 - self.eps,
                )
            )
        )

        excl = torch.cat(
            [
                torch.cat((wf[i, :y], wf[i, y + 1 :])).unsqueeze(0)
                for i, y in enumerate(labels)
            ],
            dim=0,
        )
        denominator = torch.exp(numerator) + torch.sum(torch.exp(excl), dim=1)
        L = numerator - torch.log(denominator)

        return -torch.mean(L)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def head64(name, in_features, num_classes, seed=0, **hparams):
    torch.manual_seed(seed)
    return L.make_head(name, in_features, num_classes, **hparams).double()


def at_angles(weight, labels, degrees, norms, generator):
    """Embeddings at exactly `degrees` from their class weight row, with the given norms."""
    u = F.normalize(weight[labels].detach(), dim=1)
    v = torch.randn(u.shape, generator=generator, dtype=u.dtype)
    v = F.normalize(v - (v * u).sum(1, keepdim=True) * u, dim=1)
    theta = torch.as_tensor(np.radians(degrees), dtype=u.dtype).unsqueeze(1)
    return torch.as_tensor(norms, dtype=u.dtype).reshape(-1, 1) * (torch.cos(theta) * u + torch.sin(theta) * v)


def mixed_batch(weight, num_random=24, seed=1):
    """Random embeddings plus embeddings spread over 3..177 degrees from their target (every branch)."""
    num_classes, dim = weight.shape
    g = torch.Generator().manual_seed(seed)
    degrees = np.linspace(3.0, 177.0, 30)
    labels = torch.randint(0, num_classes, (num_random + len(degrees),), generator=g)
    random = 2.0 * torch.randn(num_random, dim, generator=g, dtype=F64)
    norms = 0.5 + 3 * torch.rand(len(degrees), generator=g, dtype=F64)
    spread = at_angles(weight, labels[num_random:], degrees, norms, g)
    return torch.cat([random, spread]), labels


def loss_and_grads(loss_fn, embeddings, weight_param):
    """Loss, d loss / d embeddings, d loss / d weight_param (fresh leaf, grads zeroed)."""
    x = embeddings.detach().clone().requires_grad_(True)
    weight_param.grad = None
    loss = loss_fn(x)
    loss.backward()
    return loss.detach(), x.grad, weight_param.grad.clone()


def np_cosines(embeddings, weight):
    x = embeddings.detach().numpy()
    w = weight.detach().numpy()
    return (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T


def np_cross_entropy(logits, labels):
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


def np_psi(theta, m):
    """psi(theta) = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], straight from the paper."""
    k = np.minimum(np.floor(theta * m / np.pi), m - 1)
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


# ------------------------------------------------------------------------------------------------
# Agreement with pytorch-metric-learning 2.9
# ------------------------------------------------------------------------------------------------
PML_CASES = {
    "cosface": ({"scale": 30, "margin": 0.35}, lambda c, d: pml.CosFaceLoss(c, d, margin=0.35, scale=30)),
    "sphereface": ({"lambda_base": 0, "lambda_min": 0}, lambda c, d: pml.SphereFaceLoss(c, d, margin=4, scale=1)),
    "arcface": ({}, lambda c, d: pml.ArcFaceLoss(c, d, margin=math.degrees(0.5), scale=64)),
    "normsoftmax": ({}, lambda c, d: pml.NormalizedSoftmaxLoss(c, d, temperature=1 / 30)),
}


@pytest.mark.parametrize("name", list(PML_CASES))
def test_loss_and_gradients_match_pytorch_metric_learning(name):
    hparams, make_reference = PML_CASES[name]
    num_classes, dim = 10, 16
    head = head64(name, dim, num_classes, **hparams)
    reference = make_reference(num_classes, dim).double()
    with torch.no_grad():
        reference.W.copy_(head.weight.t())
    embeddings, labels = mixed_batch(head.weight)

    ours, ours_dx, ours_dw = loss_and_grads(lambda x: head(x, labels), embeddings, head.weight)
    theirs, theirs_dx, theirs_dw = loss_and_grads(lambda x: reference(x, labels), embeddings, reference.W)

    assert ours.dtype == F64
    assert abs(ours.item() - theirs.item()) <= 1e-10
    torch.testing.assert_close(ours_dx, theirs_dx, rtol=0, atol=1e-10)
    torch.testing.assert_close(ours_dw, theirs_dw.t(), rtol=0, atol=1e-10)
    assert ours_dw.abs().max() > 1e-3  # the comparison is not between two zero tensors


def test_mixed_batch_exercises_arcface_fallback_and_every_sphereface_interval():
    head = head64("arcface", 16, 10)
    embeddings, labels = mixed_batch(head.weight)
    theta = np.arccos(np_cosines(embeddings, head.weight)[np.arange(len(labels)), labels.numpy()])
    assert (theta > np.pi - 0.5).sum() >= 3
    assert set(np.floor(theta * 4 / np.pi).astype(int)) == {0, 1, 2, 3}


def test_arcface_target_matches_direct_formula_in_both_branches():
    head = head64("arcface", 8, 5, scale=64, margin=0.5)
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(5).repeat(4)
    degrees = np.linspace(10, 175, len(labels))  # 151.4+ degrees is the fallback branch
    embeddings = at_angles(head.weight, labels, degrees, torch.ones(len(labels)), g)

    cos = np_cosines(embeddings, head.weight)
    theta = np.arccos(np.clip(cos[np.arange(len(labels)), labels.numpy()], -1, 1))
    target = np.where(theta + 0.5 <= np.pi, np.cos(theta + 0.5), np.cos(theta) - 0.5 * np.sin(0.5))
    logits = cos.copy()
    logits[np.arange(len(labels)), labels.numpy()] = target
    assert (theta + 0.5 > np.pi).sum() >= 3
    assert head(embeddings, labels).item() == pytest.approx(np_cross_entropy(64 * logits, labels.numpy()), abs=1e-10)


def test_arcface_easy_margin_matches_direct_formula():
    head = head64("arcface", 8, 5, scale=30, margin=0.5, easy_margin=True)
    g = torch.Generator().manual_seed(5)
    labels = torch.arange(5).repeat(4)
    degrees = np.linspace(10, 175, len(labels))  # beyond 90 degrees: no margin
    embeddings = at_angles(head.weight, labels, degrees, torch.ones(len(labels)), g)

    cos = np_cosines(embeddings, head.weight)
    theta = np.arccos(np.clip(cos[np.arange(len(labels)), labels.numpy()], -1, 1))
    target = np.where(theta < np.pi / 2, np.cos(theta + 0.5), np.cos(theta))
    logits = cos.copy()
    logits[np.arange(len(labels)), labels.numpy()] = target
    assert (theta > np.pi / 2).sum() >= 5 and (theta < np.pi / 2).sum() >= 5
    assert head(embeddings, labels).item() == pytest.approx(np_cross_entropy(30 * logits, labels.numpy()), abs=1e-10)
    plain = head64("arcface", 8, 5, scale=30, margin=0.5)
    assert plain(embeddings, labels).item() != pytest.approx(head(embeddings, labels).item(), abs=1e-3)


@pytest.mark.parametrize("step, expected_margin", [(0, 0.0), (50, 0.25), (100, 0.5), (400, 0.5)])
def test_arcface_margin_warmup_matches_direct_formula_at_the_ramped_margin(step, expected_margin):
    """With a 100-step warm-up, step t trains with m·min(1, t/100): the formula (acos-based, written out
    here) at that margin, fallback branch included; at t = 0 it is a normalized softmax."""
    head = head64("arcface", 8, 5, scale=30, margin=0.5, margin_warmup_steps=100)
    head.iteration.fill_(step)
    g = torch.Generator().manual_seed(7)
    labels = torch.arange(5).repeat(4)
    degrees = np.linspace(10, 178, len(labels))
    embeddings = at_angles(head.weight, labels, degrees, torch.ones(len(labels)), g)

    m = expected_margin
    cos = np_cosines(embeddings, head.weight)
    theta = np.arccos(np.clip(cos[np.arange(len(labels)), labels.numpy()], -1, 1))
    target = np.where(theta + m <= np.pi, np.cos(theta + m), np.cos(theta) - m * np.sin(m))
    logits = cos.copy()
    logits[np.arange(len(labels)), labels.numpy()] = target
    assert head.current_margin() == pytest.approx(m)
    loss = head(embeddings, labels).item()  # a training-mode forward: the counter moves on after it
    assert loss == pytest.approx(np_cross_entropy(30 * logits, labels.numpy()), abs=1e-9)
    assert int(head.iteration) == step + 1
    if m == 0.0:
        plain = head64("normsoftmax", 8, 5, scale=30)
        plain.weight.data.copy_(head.weight.data)
        assert loss == pytest.approx(plain(embeddings, labels).item(), abs=1e-12)


def test_arcface_warmup_counter_advances_in_training_only_and_resumes_from_state_dict():
    head = L.make_head("arcface", 6, 4, scale=30.0, margin=0.4, margin_warmup_steps=4)
    x, labels = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    head.train()
    assert head.extra_metrics() == {"margin": 0.0}
    for _ in range(3):
        head(x, labels)
    assert int(head.iteration) == 3
    assert head.extra_metrics()["margin"] == pytest.approx(0.4 * 2 / 4)  # the last step used t = 2
    head.eval()
    with torch.no_grad():
        head(x, labels)
    assert int(head.iteration) == 3 and head.current_margin() == pytest.approx(0.3)

    restored = L.make_head("arcface", 6, 4, scale=30.0, margin=0.4, margin_warmup_steps=4)
    restored.load_state_dict(head.state_dict())
    assert int(restored.iteration) == 3
    # Without a warm-up the head keeps its old state_dict (no counter), so older checkpoints still load.
    assert "iteration" not in L.make_head("arcface", 6, 4).state_dict()
    assert L.make_head("arcface", 6, 4).extra_metrics() == {}


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_arcface_warmup_steps_must_be_a_whole_number(bad):
    with pytest.raises((ValueError, TypeError), match="margin_warmup_steps|not supported|must be"):
        L.make_head("arcface", 6, 4, margin_warmup_steps=bad)


# ------------------------------------------------------------------------------------------------
# CosReLU
# ------------------------------------------------------------------------------------------------
def test_cosrelu_equals_cosface_when_nothing_is_clamped():
    cosface, cosrelu = head64("cosface", 16, 10), head64("cosrelu", 16, 10)
    torch.testing.assert_close(cosface.weight, cosrelu.weight, rtol=0, atol=0)
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 10, (40,), generator=g)
    degrees = np.linspace(0.5, 130.0, 40)  # just inside the clamp threshold of 130.5 degrees
    embeddings = at_angles(cosface.weight, labels, degrees, 1 + torch.rand(40, generator=g, dtype=F64), g)

    a = loss_and_grads(lambda x: cosface(x, labels), embeddings, cosface.weight)
    b = loss_and_grads(lambda x: cosrelu(x, labels), embeddings, cosrelu.weight)
    for ours, theirs in zip(a, b):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)
    assert cosrelu.extra_metrics() == {"clamp_fraction": 0.0}


@pytest.mark.parametrize("degrees", [131.0, 150.0, 170.0])  # at 180 even CosFace's is 0
def test_cosrelu_clamp_branch_gives_target_weight_exactly_zero_gradient(degrees):
    cosface, cosrelu = head64("cosface", 8, 4), head64("cosrelu", 8, 4)
    label = torch.tensor([2])
    x = at_angles(cosrelu.weight, label, [degrees], [1.5], torch.Generator().manual_seed(5))

    _, dx, dw = loss_and_grads(lambda e: cosrelu(e, label), x, cosrelu.weight)
    _, _, dw_cosface = loss_and_grads(lambda e: cosface(e, label), x, cosface.weight)
    assert torch.all(dw[2] == 0)
    assert dw_cosface[2].abs().max() > 1e-3  # CosFace still pulls the target weight
    assert dw[[0, 1, 3]].abs().max() > 1e-3 and dx.abs().max() > 1e-3  # non-targets still push
    assert cosrelu.last_clamp_fraction == 1.0


def test_cosrelu_clamp_fraction_counts_the_batch():
    head = head64("cosrelu", 8, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    degrees = [10, 60, 120, 129, 132, 150, 170, 180]  # four beyond 130.5 degrees
    x = at_angles(head.weight, labels, degrees, torch.ones(8), torch.Generator().manual_seed(6))
    head(x, labels)
    assert head.extra_metrics()["clamp_fraction"] == pytest.approx(4 / 8)


# ------------------------------------------------------------------------------------------------
# SphereFace: psi, Chebyshev polynomial, lambda annealing, counter
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_psi_is_decreasing_and_continuous(m):
    theta = np.linspace(0, np.pi, 20001)
    psi = L.sphereface_psi(torch.as_tensor(np.cos(theta)), m).numpy()
    assert np.all(np.diff(psi) < 0)
    np.testing.assert_allclose(psi, np_psi(theta, m), atol=1e-9)
    for k in range(1, m):
        joint = k * np.pi / m
        left, right = L.sphereface_psi(torch.as_tensor(np.cos([joint - 1e-6, joint + 1e-6])), m).numpy()
        assert abs(left - right) < 1e-9
    assert psi[0] == pytest.approx(1.0) and psi[-1] == pytest.approx(1 - 2 * m)


@pytest.mark.parametrize("m", range(0, 7))
def test_chebyshev_polynomial_is_cos_of_multiple_angle(m):
    theta = torch.linspace(0, math.pi, 2001, dtype=F64)
    torch.testing.assert_close(L.chebyshev_cos_multiple(torch.cos(theta), m), torch.cos(m * theta), rtol=0, atol=1e-12)


def test_course_target_is_not_monotonic():
    degrees = np.array([0.0, 22.5, 45.0, 67.5, 90.0])
    values = L.course_target_logit(torch.as_tensor(np.cos(np.radians(degrees))), m=4).numpy()
    np.testing.assert_allclose(values, [1, 0, -1, 0, 1], atol=1e-5)
    dense = L.course_target_logit(torch.cos(torch.linspace(0, math.pi, 1001, dtype=F64)), m=4).numpy()
    assert (np.diff(dense) > 0).any() and (np.diff(dense) < 0).any()


def test_lambda_schedule_matches_formula():
    for t in (0, 1, 100, 10_000):
        assert L.sphereface_lambda(t) == pytest.approx(max(5.0, 1000.0 / (1.0 + 0.12 * t)), rel=1e-15)
        assert L.sphereface_lambda(t, base=1500, gamma=0.1) == pytest.approx(max(5.0, 1500 / (1 + 0.1 * t)))
    assert L.sphereface_lambda(0) == 1000.0 and L.sphereface_lambda(10_000) == 5.0
    head = L.make_head("sphereface", 4, 3)
    for t in (0, 1, 100, 10_000):
        head.iteration.fill_(t)
        assert head.lambda_ == pytest.approx(max(5.0, 1000.0 / (1.0 + 0.12 * t)), rel=1e-15)
        # extra_metrics logs the lambda the last training step used: λ(t-1), λ(0) before any step.
        last = max(t - 1, 0)
        assert head.extra_metrics()["lambda"] == pytest.approx(max(5.0, 1000.0 / (1.0 + 0.12 * last)), rel=1e-15)


@pytest.mark.parametrize("iteration", [0, 3, 10_000])
def test_sphereface_annealed_loss_matches_reference(iteration):
    head = head64("sphereface", 16, 10)
    head.iteration.fill_(iteration)
    embeddings, labels = mixed_batch(head.weight)
    lam = max(5.0, 1000.0 / (1.0 + 0.12 * iteration))
    x = embeddings.numpy()
    norm = np.linalg.norm(x, axis=1)
    cos = np_cosines(embeddings, head.weight)
    rows, y = np.arange(len(labels)), labels.numpy()
    psi = np_psi(np.arccos(np.clip(cos[rows, y], -1, 1)), 4)
    logits = cos.copy()
    logits[rows, y] = (lam * cos[rows, y] + psi) / (1 + lam)
    expected = np_cross_entropy(norm[:, None] * logits, y)

    head.train()
    assert head(embeddings, labels).item() == pytest.approx(expected, abs=1e-10)  # uses lambda(t), then t += 1
    assert int(head.iteration) == iteration + 1


def test_sphereface_large_lambda_is_modified_softmax():
    head = head64("sphereface", 16, 10, lambda_min=1e12)
    embeddings, labels = mixed_batch(head.weight)
    w = head.weight.detach().numpy()
    logits = embeddings.numpy() @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T  # ||x|| cos(theta_j)
    assert head(embeddings, labels).item() == pytest.approx(np_cross_entropy(logits, labels.numpy()), rel=1e-9)


def test_sphereface_counter_training_only_and_saved():
    head = L.make_head("sphereface", 6, 4)
    x, labels = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    head.train()
    for _ in range(3):
        head(x, labels)
    assert int(head.iteration) == 3
    head.eval()
    with torch.no_grad():
        head(x, labels)
        head.logits(x)
    assert int(head.iteration) == 3
    assert head.lambda_ == pytest.approx(max(5.0, 1000.0 / (1.0 + 0.12 * 3)))

    state = head.state_dict()
    assert "iteration" in state
    restored = L.make_head("sphereface", 6, 4)
    restored.load_state_dict(state)
    assert int(restored.iteration) == 3 and restored.lambda_ == head.lambda_


# ------------------------------------------------------------------------------------------------
# The course SphereFace loss, against its verbatim original
# ------------------------------------------------------------------------------------------------
def test_course_sphereface_is_identical_to_the_original_loop():
    num_classes, dim = 7, 12
    torch.manual_seed(0)
    original = AngularPenaltySMLoss(dim, num_classes).double()
    head = head64("course_sphereface", dim, num_classes, seed=0)
    torch.testing.assert_close(head.weight, original.fc.weight, rtol=0, atol=0)  # same init as nn.Linear
    with torch.no_grad():  # larger rows push some "cosines" ||w|| cos(theta) past the clamp
        head.weight[:3] *= 3.0
        original.fc.weight.copy_(head.weight)
    g = torch.Generator().manual_seed(7)
    embeddings = torch.randn(64, dim, generator=g, dtype=F64) * 5
    labels = torch.randint(0, num_classes, (64,), generator=g)
    wf_target = (F.normalize(embeddings, dim=1) @ head.weight.detach().t())[torch.arange(64), labels]
    assert (wf_target.abs() > 1).any() and (wf_target.abs() < 1).any()

    ours = loss_and_grads(lambda x: head(x, labels), embeddings, head.weight)
    theirs = loss_and_grads(lambda x: original(x, labels), embeddings, original.fc.weight)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(head.logits(embeddings), original.fc(F.normalize(embeddings, dim=1)), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# The FairFace report's unscaled "softmax" and its loss floor
# ------------------------------------------------------------------------------------------------
def test_cosine_softmax_cannot_go_below_its_floor():
    num_classes = 7
    floor = math.log(1 + (num_classes - 1) * math.exp(-num_classes / (num_classes - 1)))
    assert floor == pytest.approx(1.0537, abs=1e-4)
    assert L.cosine_softmax_loss_floor(num_classes) == pytest.approx(floor, rel=1e-14)

    # Separable embeddings: the 7 vertices of a regular simplex, 4 noisy copies each.
    g = torch.Generator().manual_seed(8)
    vertices = F.normalize(torch.eye(num_classes, dtype=F64) - 1.0 / num_classes, dim=1)
    labels = torch.arange(num_classes).repeat(4)
    embeddings = vertices[labels] + 0.01 * torch.randn(len(labels), num_classes, generator=g, dtype=F64)

    def train(name):
        head = head64(name, num_classes, num_classes, seed=9)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
        history = []
        for _ in range(300):
            optimizer.zero_grad()
            loss = head(embeddings, labels)
            loss.backward()
            optimizer.step()
            history.append(loss.item())
        return np.array(history)

    cosine = train("cosine_softmax")
    assert cosine.min() >= floor - 1e-12
    assert cosine[-1] - floor < 2e-3
    assert train("softmax")[-1] < 0.5 * floor  # the unnormalized baseline has no floor


# ------------------------------------------------------------------------------------------------
# Numerical safety at |cos theta| = 1, fp32 and bf16 autocast
# ------------------------------------------------------------------------------------------------
def extreme_batch(head):
    """Weights = basis vectors; embeddings exactly +-w_y, a multiple of w_y, and w_{y+1}."""
    num_classes, dim = head.weight.shape
    with torch.no_grad():
        head.weight.copy_(torch.eye(dim)[:num_classes])
    eye = torch.eye(dim)[:num_classes]
    labels = torch.arange(num_classes)
    embeddings = torch.cat([eye, -eye, 3.0 * eye, eye.roll(1, dims=0)])
    return embeddings, labels.repeat(4)


@pytest.mark.parametrize("name", L.available_heads())
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_finite_at_cosine_plus_minus_one(name, precision):
    torch.manual_seed(0)
    head = L.make_head(name, 8, 5)
    embeddings, labels = extreme_batch(head)
    if precision == "bf16":
        embeddings = embeddings.bfloat16()
    x = embeddings.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = head(x, labels)
        logits = head.logits(x)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32
    assert torch.isfinite(loss) and torch.isfinite(logits).all()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("name", L.available_heads())
def test_autocast_does_not_reach_inside_the_head(name):
    torch.manual_seed(0)
    head = L.make_head(name, 16, 5).eval()  # eval: SphereFace's lambda must not move between the calls
    backbone = nn.Linear(32, 16)
    inputs, labels = torch.randn(12, 32), torch.arange(12) % 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(inputs)
        assert embeddings.dtype == torch.bfloat16
        loss_autocast = head(embeddings, labels)
    loss_fp32 = head(embeddings.float(), labels)
    assert torch.equal(loss_autocast, loss_fp32)


def test_arcface_with_embedding_equal_to_weight_row_in_fp32():
    torch.manual_seed(0)
    head = L.make_head("arcface", 16, 5)
    x = head.weight.detach()[[0, 1, 2]].clone() * torch.tensor([[1.0], [-1.0], [7.0]])
    x.requires_grad_(True)
    loss = head(x, torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


# ------------------------------------------------------------------------------------------------
# Inference logits
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", COSINE_HEADS)
def test_cosine_logits_pick_the_closest_normalized_weight(name):
    head = head64(name, 16, 10)
    g = torch.Generator().manual_seed(10)
    with torch.no_grad():  # very different row norms: unnormalized weights would pick other classes
        head.weight.mul_(torch.logspace(-2, 2, 10, dtype=F64).unsqueeze(1))
    embeddings = torch.randn(200, 16, generator=g, dtype=F64)
    angles = np.arccos(np.clip(np_cosines(embeddings, head.weight), -1, 1))
    predicted = head.logits(embeddings).argmax(1).numpy()
    np.testing.assert_array_equal(predicted, angles.argmin(1))
    raw = (embeddings @ head.weight.detach().t()).argmax(1).numpy()
    assert (raw != predicted).mean() > 0.1  # the test would catch unnormalized weights


@pytest.mark.parametrize("name", ["normsoftmax", "cosine_softmax", "cosface", "cosrelu", "arcface"])
def test_cosine_logits_are_scaled_cosines(name):
    head = head64(name, 16, 10)
    embeddings = torch.randn(20, 16, generator=torch.Generator().manual_seed(11), dtype=F64) * 4
    expected = head.scale * np_cosines(embeddings, head.weight)
    np.testing.assert_allclose(head.logits(embeddings).detach().numpy(), expected, rtol=0, atol=1e-12)


def test_sphereface_logits_are_norm_times_cosine():
    head = head64("sphereface", 16, 10)
    embeddings = torch.randn(20, 16, generator=torch.Generator().manual_seed(13), dtype=F64) * 4
    expected = np.linalg.norm(embeddings.numpy(), axis=1, keepdims=True) * np_cosines(embeddings, head.weight)
    np.testing.assert_allclose(head.logits(embeddings).detach().numpy(), expected, rtol=0, atol=1e-12)


def test_softmax_logits_are_plain_linear():
    head = head64("softmax", 16, 10)
    embeddings = torch.randn(20, 16, generator=torch.Generator().manual_seed(12), dtype=F64)
    expected = embeddings.numpy() @ head.weight.detach().numpy().T
    np.testing.assert_allclose(head.logits(embeddings).detach().numpy(), expected, rtol=0, atol=1e-12)
    assert head(embeddings, torch.arange(20) % 10).item() == pytest.approx(
        np_cross_entropy(expected, np.arange(20) % 10), abs=1e-12
    )


# ------------------------------------------------------------------------------------------------
# Interface and validation
# ------------------------------------------------------------------------------------------------
def test_registry_and_interface():
    assert set(L.available_heads()) == {
        "softmax", "cosine_softmax", "normsoftmax", "sphereface", "cosface", "cosrelu", "arcface",
        "course_sphereface",
    }
    for name in L.available_heads():
        head = L.make_head(name, 12, 3)
        assert isinstance(head, L.MarginHead) and head.weight.shape == (3, 12)
        loss = head(torch.randn(4, 12), torch.tensor([0, 1, 2, 0]))
        assert loss.ndim == 0
    assert L.make_head("cosface", 4, 2).extra_metrics() == {}
    assert L.make_head("arcface", 4, 2).hparams == {"scale": 64.0, "margin": 0.5, "easy_margin": False,
                                                   "margin_warmup_steps": 0, "centered_weights": False}
    assert L.make_head("cosrelu", 4, 2).hparams == {"scale": 30.0, "margin": 0.35}
    assert L.make_head("normsoftmax", 4, 2).scale == 30.0 and L.make_head("cosine_softmax", 4, 2).scale == 1.0


def test_same_seed_same_head():
    a, b = head64("cosface", 8, 3, seed=5), head64("cosface", 8, 3, seed=5)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, head64("cosface", 8, 3, seed=6).weight)


@pytest.mark.parametrize("bad", [torch.tensor([0, 3]), torch.tensor([-1, 0])])
def test_out_of_range_labels_raise(bad):
    head = L.make_head("cosface", 4, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]") as info:
        head(torch.randn(2, 4), bad)
    assert isinstance(info.value, DataError)


def test_bad_inputs_raise():
    head = L.make_head("arcface", 4, 3)
    with pytest.raises(ValueError, match="integer"):
        head(torch.randn(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        head(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="in_features"):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown head"):
        L.make_head("cosfase", 4, 3)
    with pytest.raises(ValueError, match="does not take"):
        L.make_head("cosface", 4, 3, temperature=0.1)
    with pytest.raises(ValueError, match="integer"):
        L.make_head("sphereface", 4, 3, margin=1.5)
    int32_labels = torch.tensor([0, 2], dtype=torch.int32)  # accepted, converted to int64
    assert torch.isfinite(head(torch.randn(2, 4), int32_labels))


def test_arcface_centered_weights_are_the_rows_minus_their_mean_and_antipodal_for_two_classes():
    torch.manual_seed(0)
    head = L.make_head("arcface", 6, 2, scale=30.0, margin=0.2, centered_weights=True)
    w = head.weight.detach()
    w1, w2 = w[0] - w.mean(0), w[1] - w.mean(0)
    # Two classes: the centred rows are exact opposites, so no sample can be far from both.
    assert torch.allclose(w1, -w2)
    x = torch.randn(5, 6, dtype=torch.float64)
    cos = F.normalize(x, dim=1) @ F.normalize(torch.stack([w1, w2]).double(), dim=1).T
    assert torch.allclose(cos[:, 0], -cos[:, 1])
    # Inference logits are s * cos to the centred rows (computed by hand above).
    assert torch.allclose(head.logits(x), 30.0 * cos.to(head.logits(x).dtype))
    # The training loss: ArcFace's target cos(theta + m) against the centred rows.
    labels = torch.tensor([0, 1, 0, 1, 1])
    theta = torch.acos(cos[torch.arange(5), labels])
    logits = 30.0 * cos.clone()
    logits[torch.arange(5), labels] = 30.0 * torch.cos(theta + 0.2)
    assert torch.allclose(head(x, labels).double(), F.cross_entropy(logits, labels), atol=1e-6)
    # Seven classes: the centred rows sum to zero; free rows are untouched without the option.
    seven = L.make_head("arcface", 6, 7, centered_weights=True)
    assert torch.allclose(seven.class_weights().sum(0), torch.zeros(6), atol=1e-6)
    plain = L.make_head("arcface", 6, 7)
    assert plain.class_weights() is plain.weight
    with pytest.raises(ValueError, match="two classes"):
        L.make_head("arcface", 6, 1, centered_weights=True)


def test_docstring_markdown_turns_rst_math_and_roles_into_markdown():
    class Example:
        """Target logit :math:`s(\\cos\\theta_y - m)`, see :func:`~lib.losses.sphereface_psi` and ``margin``.

        .. math:: z_y = \\|x\\|\\,\\psi(\\theta_y),
                  \\qquad \\lambda = 5

        Done.
        """

    text = L.docstring_markdown(Example)
    assert text.splitlines()[0] == ("Target logit $s(\\cos\\theta_y - m)$, see `lib.losses.sphereface_psi` "
                                    "and `margin`.")
    assert "$$z_y = \\|x\\|\\,\\psi(\\theta_y), \\qquad \\lambda = 5$$" in text.splitlines()
    assert text.splitlines()[-1] == "Done." and ":math:" not in text and ".. math" not in text
    for head in L.HEADS.values():  # every head's page text is free of reStructuredText markup
        assert not re.search(r":(math|func|attr|meth|class):`|\.\. math::", L.docstring_markdown(head))

"""SAM: the two-step update checked against hand-computed values on a quadratic (float64)."""

import copy
import warnings

import pytest
import torch

from trainers.sam import SAM

A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, 0.25], [0.0, 0.25, 1.0]], dtype=torch.float64)  # SPD
W0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def quadratic(w):
    return 0.5 * w @ A @ w  # gradient A w


def sam_update(optimizer, w, loss_fn=quadratic):
    optimizer.zero_grad()
    loss_fn(w).backward()
    optimizer.first_step(zero_grad=True)
    loss_fn(w).backward()
    optimizer.second_step(zero_grad=True)


def test_one_sam_step_equals_hand_computed_update():
    lr, rho = 0.1, 0.05
    w = torch.nn.Parameter(W0.clone())
    sam_update(SAM([w], torch.optim.SGD, rho=rho, lr=lr), w)
    g0 = A @ W0
    expected = W0 - lr * (A @ (W0 + rho * g0 / torch.linalg.vector_norm(g0)))
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-15)
    # bit for bit when the hand computation follows the implementation's order of operations:
    # e = g * (rho / ||g||), then SGD's w.add(g(w + e), alpha=-lr) (one rounding, where w - lr * g has two)
    e = g0 * (rho / torch.sqrt((g0 * g0).sum()))
    assert torch.equal(w.detach(), W0.add(A @ (W0 + e), alpha=-lr))


def test_two_steps_and_closure_api_agree():
    lr, rho = 0.05, 0.1
    w1 = torch.nn.Parameter(W0.clone())
    opt1 = SAM([w1], torch.optim.SGD, rho=rho, lr=lr, momentum=0.9)
    w2 = torch.nn.Parameter(W0.clone())
    opt2 = SAM([w2], torch.optim.SGD, rho=rho, lr=lr, momentum=0.9)

    def closure():
        opt2.zero_grad()
        loss = quadratic(w2)
        loss.backward()
        return loss

    for _ in range(3):
        sam_update(opt1, w1)
        closure()
        opt2.step(closure)
    assert torch.equal(w1.detach(), w2.detach())
    with pytest.raises(RuntimeError, match="two gradient evaluations"):
        opt1.step()


def test_adaptive_sam_perturbation():
    lr, rho = 0.1, 0.5
    w = torch.nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, lr=lr)
    quadratic(w).backward()
    opt.first_step(zero_grad=True)
    g0 = A @ W0
    e = rho * W0**2 * g0 / torch.linalg.vector_norm(W0.abs() * g0)
    torch.testing.assert_close(w.detach(), W0 + e, rtol=0, atol=1e-15)
    quadratic(w).backward()
    opt.second_step()
    torch.testing.assert_close(w.detach(), W0 - lr * (A @ (W0 + e)), rtol=0, atol=1e-15)


def test_grad_norm_spans_all_parameters_and_zero_gradient_is_safe():
    a = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor([4.0], dtype=torch.float64))
    opt = SAM([{"params": [a]}, {"params": [b]}], torch.optim.SGD, rho=1.0, lr=0.1)
    (0.5 * a**2 + 0.5 * b**2).sum().backward()  # g = (3, 4), ||g|| = 5
    opt.first_step()
    torch.testing.assert_close(torch.cat([a.detach(), b.detach()]), torch.tensor([3.6, 4.8], dtype=torch.float64))
    opt.second_step(zero_grad=True)
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))  # minimum: g = 0, e must be 0 (not NaN)
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    sam_update(opt, w)
    assert torch.equal(w.detach(), torch.zeros(3, dtype=torch.float64))


def test_state_dict_round_trip_and_scheduler_reach_the_base_optimizer():
    w = torch.nn.Parameter(W0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    sam_update(opt, w)
    state = opt.state_dict()
    assert "momentum_buffer" in next(iter(state["state"].values()))
    w_copy = torch.nn.Parameter(w.detach().clone())
    opt_copy = SAM([w_copy], torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    opt_copy.load_state_dict(copy.deepcopy(state))  # as from disk: load_state_dict keeps same-device tensors
    sam_update(opt, w)
    sam_update(opt_copy, w_copy)
    assert torch.equal(w.detach(), w_copy.detach())

    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    sam_update(opt, w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()" after a two-step update
        scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups is opt.base_optimizer.param_groups


def test_invalid_rho():
    with pytest.raises(ValueError, match="rho"):
        SAM([torch.nn.Parameter(torch.zeros(1))], torch.optim.SGD, rho=-1.0, lr=0.1)

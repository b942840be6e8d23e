"""Sharpness-Aware Minimization (Foret et al., ICLR 2021) as a wrapper around any torch optimizer.

DeiT-LT's CIFAR / ImageNet-LT teachers are trained with SAM: flat teachers distil better (Rangwani et al., 2024).
One SAM update is two forward/backward passes:

    loss(w).backward();      sam.first_step(zero_grad=True)   # e = rho * g / ||g||; w <- w + e   (ascent)
    loss(w + e).backward();  sam.second_step(zero_grad=True)  # w <- w (restored); base step with g(w + e)

`adaptive=True` is ASAM (Kwon et al., 2021): e = rho * |w|^2 * g / || |w| * g ||. Or pass a closure that recomputes
the loss and calls backward: `sam.step(closure)`.

The base optimizer shares the parameter groups, so learning-rate schedulers set on the SAM object drive the base
optimizer; `state_dict()` / `load_state_dict()` save and restore the base optimizer (momentum, Adam moments).
"""

import torch


class SAM(torch.optim.Optimizer):
    """SAM(params, base_optimizer_cls, rho=0.05, adaptive=False, **kwargs).

    Args:
        params: parameters or parameter groups (a group may set its own `rho` / `adaptive`).
        base_optimizer_cls: the optimizer class taking the descent step, e.g. `torch.optim.SGD`.
        rho: radius of the neighbourhood (0.05 in the paper; ASAM uses larger values, e.g. 2.0).
        adaptive: ASAM's scale-invariant neighbourhood.
        **kwargs: arguments of the base optimizer (lr, momentum, weight_decay, ...).
    """

    def __init__(self, params, base_optimizer_cls, rho: float = 0.05, adaptive: bool = False, **kwargs):
        if rho < 0.0:
            raise ValueError(f"rho={rho} must be non-negative.")
        defaults = dict(rho=rho, adaptive=adaptive, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer_cls(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set of groups: schedulers reach both
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        """|| g || over all parameters (ASAM: || |w| * g ||), computed on the first parameter's device."""
        norms = [
            ((torch.abs(p) if group["adaptive"] else 1.0) * p.grad).norm(p=2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return torch.tensor(0.0)
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False):
        """Ascent: remember w, then w <- w + e with e = rho * g / ||g|| (ASAM: rho * |w|^2 * g / || |w| * g ||)."""
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / grad_norm.clamp_min(1e-12)  # a zero gradient gives e = 0
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False):
        """Back to w (restored exactly, not w + e - e), then the base optimizer's step with the gradient at w + e."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or "old_p" not in self.state[p]:
                    continue
                p.copy_(self.state[p].pop("old_p"))
        self.base_optimizer.step()
        self._opt_called = True  # what torch's LR schedulers check (they wrap `step`, which two-step loops bypass)
        if zero_grad:
            self.zero_grad()

    def step(self, closure=None):
        """Full SAM step; `closure` must zero the gradients, compute the loss, call `backward()` and return the loss.
        The gradients at w must already be there (call the closure once before, as for L-BFGS-style loops)."""
        if closure is None:
            raise RuntimeError(
                "SAM needs two gradient evaluations: call first_step() and second_step() around a second "
                "forward/backward pass, or pass a closure to step()."
            )
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        loss = closure()
        self.second_step()
        return loss

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups


__all__ = ["SAM"]

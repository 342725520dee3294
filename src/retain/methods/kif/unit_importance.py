"""Element-wise importance of trainable weights, smoothed over the optimizer steps of a task.

After every optimizer step, on the clipped gradients still in ``.grad`` (KIF, following AdaLoRA's
sensitivity estimate):

    s     = |w g|                      (first order)
          | |w g - 0.5 (w g)^2|        (second order, KIF's default)
    I_bar = b1 I_bar + (1 - b1) s      sensitivity, fp32, starts at 0, no bias correction
    U_bar = b2 U_bar + (1 - b2) |s - I_bar|   uncertainty (with the I_bar just updated)
    score = I_bar * U_bar

With ``skip_first`` the first optimizer step of the task is not folded in (the authors' released
code updates only when its step counter is past 0); the EMAs then start from the second step.

The update runs every step, so it is a handful of fused multi-tensor (``torch._foreach_*``) ops
over all tracked tensors: no Python loop over parameters and no per-unit work until the task ends.

Every op is element-wise, so under sharded training (FSDP2) each process tracks the rows of its
own shards (weights and reduce-scattered gradients are the single-process values there) and
the element scores are gathered once, when the task ends.
"""

from __future__ import annotations

from typing import Optional

import torch

from retain.engine.sharding import local_tensor

ORDERS = ("first", "second")


class ImportanceTracker:
    """EMA sensitivity and uncertainty for a fixed list of tensors (reset per task)."""

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        order: str = "second",
        beta1: float = 0.85,
        beta2: float = 0.85,
        skip_first: bool = False,
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is not one of {ORDERS}")
        self.params = params
        self.second_order = order == "second"
        self.beta1 = beta1
        self.beta2 = beta2
        self.skip_first = skip_first
        self.steps = 0  # updates folded in
        self.seen = 0  # optimizer steps seen, skipped ones included
        self.sensitivity: list[torch.Tensor] = []
        self.uncertainty: list[torch.Tensor] = []
        self._zeros: dict[int, torch.Tensor] = {}
        self._fp32 = all(p.dtype == torch.float32 for p in params)
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.seen = 0
        self.sensitivity = [torch.zeros_like(local_tensor(p.detach()), dtype=torch.float32) for p in self.params]
        self.uncertainty = [torch.zeros_like(local_tensor(p.detach()), dtype=torch.float32) for p in self.params]

    def _grad(self, index: int, param: torch.nn.Parameter) -> torch.Tensor:
        if param.grad is not None:
            return local_tensor(param.grad)
        # A tensor the step did not reach (unused module): zero gradient, zero sensitivity.
        if index not in self._zeros:
            self._zeros[index] = torch.zeros_like(local_tensor(param.detach()))
        return self._zeros[index]

    @torch.no_grad()
    def update(self, grads: Optional[list[torch.Tensor]] = None) -> None:
        """One step: fold the current weights and gradients into the EMAs."""
        self.seen += 1
        if not self.params or (self.skip_first and self.seen == 1):
            return
        weights = [local_tensor(p.detach()) for p in self.params]
        grads = grads if grads is not None else [self._grad(i, p) for i, p in enumerate(self.params)]
        if not self._fp32:
            weights = [w.float() for w in weights]
            grads = [g.float() for g in grads]
        s = torch._foreach_mul(weights, grads)  # w g
        if self.second_order:
            squared = torch._foreach_mul(s, s)
            torch._foreach_add_(s, squared, alpha=-0.5)  # w g - 0.5 (w g)^2
        torch._foreach_abs_(s)
        torch._foreach_lerp_(self.sensitivity, s, 1.0 - self.beta1)
        torch._foreach_sub_(s, self.sensitivity)
        torch._foreach_abs_(s)
        torch._foreach_lerp_(self.uncertainty, s, 1.0 - self.beta2)
        self.steps += 1

    @torch.no_grad()
    def element_scores(self) -> list[torch.Tensor]:
        """I_bar * U_bar per tracked tensor (fp32; this process's rows of a sharded tensor)."""
        return torch._foreach_mul(self.sensitivity, self.uncertainty)

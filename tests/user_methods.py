"""Methods that live outside the package, named by import path (``tests.user_methods:Name``) in the
tests of ``tests/test_method_declarations.py``; nothing registers them and no other file names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retain.config import option
from retain.methods.base import Method


@dataclass
class PullParams:
    weight: float = option("Strength of the pull towards the weights at task start.", 0.01, low=0.0)


class PullToStart(Method):
    """Declares nothing but its name and parameters: single process, every model kind."""

    name = "pull"
    summary = "Penalise the distance to the weights the task started from."
    params_class = PullParams

    def on_phase_start(self, ctx: Any) -> None:
        self.anchor = {n: p.detach().clone() for n, p in ctx.trainable_parameters()}

    def on_loss(self, ctx: Any, batch: Any, outputs: Any, loss: Any) -> Any:
        penalty = sum(((p - self.anchor[n]) ** 2).sum() for n, p in ctx.trainable_parameters())
        return loss + self.params.weight * penalty

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": getattr(self, "anchor", None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = state["anchor"]


class DataParallelPull(PullToStart):
    """The same method, declared correct under data parallelism."""

    name = "pull-ddp"
    distributed = ("no", "multi_gpu")


class Nameless(Method):
    """A Method subclass without a name."""


class NotAMethod:
    name = "not-a-method"

"""One dispatcher for every method hook: call it on each method in list order, combine by rule.

The rules live in one table (:data:`HOOK_RULES`), so the loop and the runner say *which* hook
fires, never how the answers of several methods are put together. A method that does not
override a hook is skipped (no call per micro-batch for methods that do nothing there).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, Optional

from retain.methods.base import ExtraSteps, Method, StepStats


class Rule(Enum):
    EACH = "each"  # call every method; answers are ignored
    CHAIN = "chain"  # the last argument is threaded through: each method's answer feeds the next
    LAST = "last"  # the last method that answers (not None) wins
    MERGE = "merge"  # dict answers merged in order (a later method's key wins)
    CONCAT = "concat"  # list answers concatenated in method order
    STEPS = "steps"  # each; an ExtraSteps answer is run by the engine before the next method


HOOK_RULES: dict[str, Rule] = {
    "on_setup": Rule.EACH,
    "on_plan_phases": Rule.LAST,
    "on_phase_start": Rule.EACH,
    "on_plan_batches": Rule.CHAIN,
    "on_batch_start": Rule.EACH,
    "on_loss": Rule.CHAIN,
    "on_backward_end": Rule.EACH,
    "on_step_end": Rule.EACH,
    "on_phase_end": Rule.STEPS,
    "on_log": Rule.MERGE,
    "on_run_files": Rule.MERGE,
    "on_report": Rule.CONCAT,
}

StepsRunner = Callable[[ExtraSteps], StepStats]


class HookDispatcher:
    """Calls hooks on the run's methods (see :data:`HOOK_RULES`)."""

    def __init__(self, methods: list[Method], run_steps: Optional[StepsRunner] = None) -> None:
        self.methods = list(methods)
        self.run_steps = run_steps
        self._implementers = {
            hook: [m for m in self.methods if getattr(type(m), hook) is not getattr(Method, hook)] for hook in HOOK_RULES
        }

    def call(self, hook: str, *args: Any) -> Any:
        rule = HOOK_RULES[hook]
        methods = self._implementers[hook]
        if rule is Rule.CHAIN:
            *head, value = args
            for method in methods:
                value = getattr(method, hook)(*head, value)
            return value
        answers = [getattr(method, hook)(*args) for method in methods] if rule is not Rule.STEPS else self._steps(hook, methods, args)
        if rule is Rule.LAST:
            return next((a for a in reversed(answers) if a is not None), None)
        if rule is Rule.MERGE:
            return {k: v for a in answers for k, v in a.items()}
        if rule is Rule.CONCAT:
            return [item for a in answers for item in a]
        return None

    def chain_with_terms(self, hook: str, *args: Any) -> tuple[Any, dict[str, Any]]:
        """A CHAIN hook, also returning what each method changed (its answer minus its input).

        For ``on_loss`` these differences are the methods' loss terms (on the device, detached),
        which the step log records without any method having to report them.
        """
        *head, value = args
        terms: dict[str, Any] = {}
        for method in self._implementers[hook]:
            answer = getattr(method, hook)(*head, value)
            if answer is not value:
                terms[method.name] = (answer - value).detach()
            value = answer
        return value, terms

    def _steps(self, hook: str, methods: list[Method], args: tuple[Any, ...]) -> list[Any]:
        for method in methods:
            steps = getattr(method, hook)(*args)
            if steps is None:
                continue
            if self.run_steps is None:
                raise RuntimeError(f"{method.name} asked for extra steps ({steps.name}) where none can run")
            steps.done(self.run_steps(steps))
        return []

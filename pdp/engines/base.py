"""The engine interface: load a bundle once, then evaluate the decision many times."""

from __future__ import annotations

from typing import Any, Protocol

from ..policy.bundle import PolicyBundle

DECISION_PATH = "gateway/decision"  # data.gateway.decision


class EngineError(Exception):
    """Evaluation failed (runtime error or engine unreachable): the caller fails closed."""


class InvalidInput(EngineError):
    """The engine cannot take this input (e.g. a lone surrogate): a 400, not a 503."""


class Engine(Protocol):
    name: str
    memoizable: bool  # whether a decision may be reused for the same input and revision

    def compile(self, bundle: PolicyBundle) -> Any:
        """Checks and compiles a bundle; returns a handle for evaluate(). Raises PolicyError."""

    def evaluate(self, compiled: Any, input_doc: dict) -> Any:
        """The value of data.gateway.decision, or None when undefined. Raises EngineError."""

    def ready(self) -> bool:
        """Whether the engine can evaluate right now."""

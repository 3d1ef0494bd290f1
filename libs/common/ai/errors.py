"""Typed failures of AI providers.

Every failure a job can meet is an `AIError`. `refundable` tells the job layer whether the
credits held for the call go back in full: a provider that never produced a usable answer
(transport error, HTTP error, output that stays malformed after the repair retry) charges
nothing.
"""

from __future__ import annotations


class AIError(Exception):
    """Base of every AI provider failure."""

    refundable: bool = True

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class AIConfigurationError(AIError):
    """The provider cannot be built or used as configured (missing model files, bad URL)."""


class AIProviderError(AIError):
    """The provider answered with an error or did not answer at all."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        # Seconds the provider asked us to wait (its Retry-After), when it said so.
        self.retry_after = retry_after


class AIResponseInvalid(AIError):
    """The provider answered, but not with output matching the contract, even after the
    one repair retry. `raw` keeps the last answer for the logs."""

    def __init__(self, message: str, *, raw: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.raw = raw
        self.attempts = attempts


class AIUnsupported(AIError):
    """The provider does not offer this capability."""

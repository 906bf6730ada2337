"""Typed, actionable errors: each says what went wrong and the command that fixes it.

The CLI maps them to exit codes (README.md, "Command line": 1 error, 2 configuration,
3 unreachable, 4 model not found); the
language server turns them into `window/showMessage` and chat `error` events.
"""

from __future__ import annotations

from koma.redaction import redact


class KomaError(Exception):
    """Base class; `hint` is the next thing the user should try."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        # A server may echo the API key back; it must not reach the user's screen or a log.
        message = redact(message)
        hint = redact(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(KomaError):
    """A setting, flag or config file is invalid."""

    exit_code = 2


class ProviderUnreachable(KomaError):
    """Nothing answers at the provider's base URL."""

    exit_code = 3


class ModelNotFound(KomaError):
    exit_code = 4


class CapabilityMissing(KomaError):
    """The model lacks a capability the request needs (tools, insert, thinking)."""


class ContextOverflow(KomaError):
    """The prompt does not fit the model's context window."""


class ProviderTimeout(KomaError):
    """The server kept Koma waiting longer than allowed."""


class FirstByteTimeout(ProviderTimeout):
    """No byte of the answer arrived within `firstByteTimeoutSeconds` (the model-loading wait)."""


class IdleTimeout(ProviderTimeout):
    """The answer had started, then the server went silent for `idleTimeoutSeconds`."""


class ProviderError(KomaError):
    """The server answered with an error (HTTP status or an `{"error": …}` body or line)."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.retryable = retryable


class StreamError(ProviderError):
    """The stream broke or carried an error after it had started (mid-stream)."""

"""Known secret values (API keys) never appear in an error, a log line or a message.

A server may echo the key it was sent ("invalid key sk-…"), and that text becomes a
`KomaError` shown in the terminal, the editor, `koma doctor` and the status bar. Every key Koma
holds is remembered here when it is loaded, and `KomaError` and every log record cut it out of
their text, so no single sink has to remember to. (A traceback's text is not covered: Koma logs
provider failures as messages, not tracebacks.)
"""

from __future__ import annotations

import logging
import threading

# Shorter values would cut ordinary words out of messages; no real key is that short.
MIN_SECRET_CHARS = 8
MASK = "[redacted]"

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def remember_secret(value: str | None) -> None:
    """Redact `value` from every later error and log line of this process."""
    global _secrets
    if not value or len(value.strip()) < MIN_SECRET_CHARS:
        return
    with _lock:
        if value not in _secrets:
            # Longest first, so a key that contains another is cut as a whole.
            _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))
    _install_log_filter()


def redact(text: str) -> str:
    """`text` with every remembered secret replaced by `[redacted]`."""
    for value in _secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


_factory_installed = False


def _install_log_filter() -> None:
    """Redact every log record as it is made (any logger, any handler, added before or after)."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
        previous = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _secrets:
            try:
                message = record.getMessage()
            # A bad format string (or a failing __str__): the handler reports it when it formats
            # the record; logging from inside the record factory would recurse.
            except Exception:
                return record
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)

"""Log lines: text or JSON (`CXPULSE_LOG_FORMAT=json`, python-json-logger), each with the id of the HTTP
request it was written for, and never a secret.

The request id lives in a context variable that the HTTP middleware sets (`http.request_id`); a filter
copies it onto every record, so a line written anywhere while a request is handled — a handler, the store,
a library — carries it. Every line goes through `redact` last: API keys, `Bearer` tokens and webhook
signing secrets and Slack webhook paths are masked however they got into a message or a traceback
(defence in depth: the code does not log them in the first place). Survey comments are kept out at the
source: nothing logs event bodies or per-field validation messages (which quote values).
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

#: The id of the request being handled in this context (None outside a request).
request_id: ContextVar[str | None] = ContextVar("cxpulse_request_id", default=None)

_SECRETS = re.compile(
    r"cxp_[0-9a-f]{8}\.[A-Za-z0-9_-]{20,}"  # an API key
    r"|(?<=[Bb]earer )[^\s\"',;]+"  # whatever follows Bearer
    r"|(?<=[?&]key=)[^\s&\"']+"  # a key in a query string
    r"|whsec_[A-Za-z0-9+/=]{8,}"  # a webhook signing secret
    r"|(?<=hooks\.slack\.com/services/)[^\s\"']+"  # a Slack webhook URL is itself a secret
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = ["asctime", "levelname", "name", "message", "request_id"]


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or `-`) on the record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class Redacting(logging.Formatter):
    """Formats with `inner`, then masks secrets in the whole line (message, extras and traceback)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


def formatter(fmt: Literal["text", "json"]) -> logging.Formatter:
    if fmt == "json":
        inner: logging.Formatter = JsonFormatter(
            JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}
        )
    else:
        inner = logging.Formatter(TEXT_FORMAT)
    return Redacting(inner)


def configure_logging(fmt: Literal["text", "json"] = "text", level: int = logging.INFO) -> None:
    """One stderr handler on the root logger; uvicorn's loggers propagate to it (run uvicorn with
    `log_config=None`), so they share the format, the request id and the redaction."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO, and a notification target's URL may hold a secret
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))

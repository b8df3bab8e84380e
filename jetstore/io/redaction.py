"""Secrets kept out of text: values masked where they stand alone, and log records redacted (botocore's debug
logs print request headers)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

MIN_SECRET = 4  # shorter values are not masked: "a" as a key would turn "cannot read" into "c***nnot re***d"
_SECRET_EDGE = "A-Za-z0-9"


def mask_secrets(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of the secrets (of at least :data:`MIN_SECRET` characters) replaced by
    ``***``, longest first; only where they stand alone, not inside a longer run of letters and digits."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True):
        if secret in text:
            text = re.sub(rf"(?<![{_SECRET_EDGE}]){re.escape(secret)}(?![{_SECRET_EDGE}])", "***", text)
    return text


# parts of signed requests and presigned URLs; a signature in hex (SigV4: also "Signature:" and a line break in
# botocore's debug log) or in base64 (SigV2)
SIGNED = re.compile(r"(Credential=)[^/,\s'\"]+|(Signature(?:=|:\s*))[0-9a-zA-Z%+/=]{16,}"
                    r"|(X-Amz-Security-Token['\"]?[=:]\s*['\"]?)[^\s'\",]+")


class RedactingFilter(logging.Filter):
    """Masks credentials in every log record (debug logs of botocore print request headers): the given
    secrets, those of the ``AWS_*`` environment, and the access key id, signature and session token of
    signed requests."""

    def __init__(self, secrets: list[str] | None = None, environ: Mapping[str, str] = os.environ):
        super().__init__()
        found = [environ.get(name, "") for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
        self.secrets = [*found, *(secrets or [])]

    def redact(self, text: str) -> str:
        text = mask_secrets(text, self.secrets)
        return SIGNED.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

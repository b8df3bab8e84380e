"""Storage options: fsspec's options for local paths and S3 (Ceph RGW, custom endpoints), from the standard
``AWS_*`` environment variables or given explicitly, checked, and printed without their secrets.

Two settings make Ceph RGW work where botocore's defaults fail: path-style addressing and
``request_checksum_calculation = when_required`` (RGW rejects aws-chunked uploads with CRC trailers with
HTTP 411).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from jetstore.errors import JetstoreError
from jetstore.io.locations import protocol
from jetstore.io.redaction import mask_secrets

SECRET_KEYS = frozenset({"key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
                         "aws_session_token", "session_token"})
S3_CONFIG = {
    "s3": {"addressing_style": "path"},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
    "retries": {"max_attempts": 8, "mode": "adaptive"},  # rides out gateway restarts and 503s mid-run
    "connect_timeout": 5,
    "read_timeout": 120,
}
PROBE_CONFIG = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 3}  # checks before a run


class StorageOptions(dict):
    """fsspec storage options whose printed form hides credentials (also inside Dask task reprs)."""

    def __repr__(self) -> str:
        return repr(_redacted(self))

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """Every secret value held, for scrubbing messages."""
        found: list[str] = []
        _collect_secrets(self, found)
        return found

    def scrub(self, text: str) -> str:
        """Mask any secret held here that appears in ``text`` (see :func:`mask_secrets`)."""
        return mask_secrets(text, self.secrets())


OPTION_TYPES = {"client_kwargs": dict, "config_kwargs": dict, "s3_additional_kwargs": dict, "endpoint_url": str,
                "key": str, "secret": str, "token": str, "anon": bool, "use_ssl": bool}


def options_problem(options: Any) -> str | None:
    """What is wrong with storage options (None: nothing): they must be a JSON object, and the options fsspec's
    S3 filesystem reads as objects, text or flags must have that type (``{"client_kwargs": 5}`` otherwise
    fails deep inside s3fs)."""
    if not isinstance(options, Mapping):
        return "storage options must be a JSON object"
    for key, kind in OPTION_TYPES.items():
        if key in options and not isinstance(options[key], kind):
            return f"storage option '{key}' must be {TYPE_NAMES[kind]}, not {type(options[key]).__name__}"
    return None


TYPE_NAMES = {dict: "a JSON object", str: "text", bool: "true or false"}


def resolve_storage_options(url: str, user: Mapping[str, Any] | None = None) -> StorageOptions:
    """Storage options for ``url``: environment defaults for S3, deep-merged with ``user`` options (refused
    when malformed: a :class:`~jetstore.errors.JetstoreError`, exit 2)."""
    problem = options_problem(user or {})
    if problem is not None:
        raise JetstoreError(problem)
    options: dict[str, Any] = {}
    if protocol(url) in ("s3", "s3a"):
        options = s3_options_from_environment()
    merged = _deep_merge(options, dict(user or {}))
    return StorageOptions(merged)


def s3_options_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """s3fs options from ``AWS_*`` variables: endpoint, credentials, CA bundle, RGW-safe client config."""
    # no cached listings: other processes write the same prefixes (a cached listing hides their objects)
    options: dict[str, Any] = {"config_kwargs": copy.deepcopy(S3_CONFIG), "use_listings_cache": False}
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        options["key"] = environ["AWS_ACCESS_KEY_ID"]
        options["secret"] = environ["AWS_SECRET_ACCESS_KEY"]
        if environ.get("AWS_SESSION_TOKEN"):
            options["token"] = environ["AWS_SESSION_TOKEN"]
    client_kwargs: dict[str, Any] = {}
    if environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION"):
        client_kwargs["region_name"] = environ.get("AWS_REGION") or environ["AWS_DEFAULT_REGION"]
    if environ.get("AWS_CA_BUNDLE"):
        client_kwargs["verify"] = environ["AWS_CA_BUNDLE"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), dict(value))
        else:
            out[key] = value
    return out


def _redacted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: ("***" if k in SECRET_KEYS and v else _redacted(v)) for k, v in value.items()}
    return value


def _collect_secrets(value: Any, found: list[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str) and item:
                found.append(item)
            else:
                _collect_secrets(item, found)


def probe_options(options: Mapping[str, Any]) -> StorageOptions:
    """Options for checks before a run: few retries and a short connect timeout, so a wrong endpoint
    fails in seconds."""
    out = StorageOptions(copy.deepcopy(dict(options)))
    if "config_kwargs" in out:
        out["config_kwargs"] = _deep_merge(out["config_kwargs"], PROBE_CONFIG)
        out.update(skip_instance_cache=True, use_listings_cache=False)  # a fresh look, not a cached listing
    return out

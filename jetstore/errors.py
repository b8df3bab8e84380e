"""Exception types: every user-facing failure names the file, branch or key involved."""


class JetstoreError(Exception):
    """Base class for errors shown to users as one clear message (no traceback)."""


class SchemaError(JetstoreError):
    """A schema or config is invalid; the message names the offending key."""


class ExpressionError(SchemaError):
    """An expression uses something the safe evaluator does not allow, or fails to evaluate."""


class InputError(JetstoreError):
    """An input file cannot be converted (missing, not ROOT, truncated, missing or mistyped branch)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.url, self.reason))


class DatasetError(JetstoreError):
    """A dataset is missing, incomplete, corrupt or inconsistent with the request."""


class ShardError(JetstoreError):
    """Writing one shard failed for a reason other than its input (storage, bug); names shard and input."""

    def __init__(self, shard: str, url: str, reason: str):
        super().__init__(f"shard {shard} (from {url}): {reason}")
        self.shard, self.url, self.reason = shard, url, reason

    def __reduce__(self):
        return (type(self), (self.shard, self.url, self.reason))

"""A JSON Schema compiled to plain Python predicates, for documents with many records (a manifest of
200,000 shards took jsonschema 10 minutes, ~1.5 ms per shard; the predicates take ~10 µs).

The predicates are *sound, not complete*: when one says yes the document is valid; when it says no,
jsonschema, the authority, decides and names the key (so a predicate may be stricter than the schema, e.g.
about ``1.0`` as an integer, never laxer). Only the keywords the manifest schema uses are compiled; any
other keyword is refused when compiling, so a change of the schema cannot silently go unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sized
from typing import Any

Check = Callable[[Any], bool]
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description"})
TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """The predicate of ``schema`` (its ``$defs`` resolve ``#/$defs/<name>`` references)."""
    defs: dict[str, Check] = {}
    compiled: set[str] = set()
    raw = schema.get("$defs", {})

    def reference(ref: str) -> Check:
        name = ref.removeprefix("#/$defs/")
        if name == ref or name not in raw:
            raise ValueError(f"unsupported reference {ref!r}")
        if name not in defs:
            defs[name] = lambda v: False  # a placeholder while it compiles (recursive definitions)
            defs[name] = _compile(raw[name], reference)
            compiled.add(name)
        if name in compiled:
            return defs[name]
        return lambda v: defs[name](v)

    return _compile({k: v for k, v in schema.items() if k != "$defs"}, reference)


def _compile(node: Mapping[str, Any] | bool, reference: Callable[[str], Check]) -> Check:
    if node is True:
        return lambda v: True
    if node is False:
        return lambda v: False
    checks: list[Check] = []
    keys = set(node) - ANNOTATIONS
    if "$ref" in keys:
        checks.append(reference(node["$ref"]))
    if "type" in keys:
        checks.append(TYPES[node["type"]])
    if "enum" in keys or "const" in keys:
        checks.append(_equal_to(node["enum"] if "enum" in keys else [node["const"]]))
    checks += _strings(node, keys) + _numbers(node, keys) + _arrays(node, keys, reference)
    checks += _objects(node, keys, reference) + _logic(node, keys, reference)
    unknown = keys - HANDLED
    if unknown:
        raise ValueError(f"keywords not compiled: {sorted(unknown)}")
    if len(checks) == 1:
        return checks[0]
    checks_ = tuple(checks)

    def every(v: Any) -> bool:
        for check in checks_:  # noqa: SIM110 (a loop: all() over a generator is twice as slow here)
            if not check(v):
                return False
        return True
    return every


def _equal_to(allowed: list[Any]) -> Check:
    """Equality as JSON Schema has it: ``2 == 2.0``, but ``true`` is not ``1``; plain values only."""
    if not all(isinstance(a, str | int | float | bool) or a is None for a in allowed):
        raise ValueError("only enums of plain values are compiled")
    strings = {a for a in allowed if isinstance(a, str)}
    numbers = [a for a in allowed if type(a) in (int, float)]
    flags = [a for a in allowed if isinstance(a, bool) or a is None]

    def check(v: Any) -> bool:
        if isinstance(v, str):
            return v in strings
        if type(v) in (int, float):
            return any(v == a for a in numbers)
        return any(v is a for a in flags)
    return check


def _strings(node: Mapping[str, Any], keys: set[str]) -> list[Check]:
    out: list[Check] = []
    if "pattern" in keys:
        search = re.compile(node["pattern"]).search
        out.append(lambda v: not isinstance(v, str) or search(v) is not None)
    return out + _lengths(node, "minLength", "maxLength", str)


def _lengths(node: Mapping[str, Any], low_key: str, high_key: str, kind: type[Sized]) -> list[Check]:
    """Bounds on the length of the values of type ``kind`` (others pass)."""
    low, high = node.get(low_key, 0), node.get(high_key)
    if low_key not in node and high_key not in node:
        return []
    return [lambda v: not isinstance(v, kind) or (len(v) >= low and (high is None or len(v) <= high))]


def _numbers(node: Mapping[str, Any], keys: set[str]) -> list[Check]:
    out: list[Check] = []
    if "minimum" in keys:
        low = node["minimum"]
        out.append(lambda v: type(v) not in (int, float) or v >= low)
    if "maximum" in keys:
        high = node["maximum"]
        out.append(lambda v: type(v) not in (int, float) or v <= high)
    return out


def _arrays(node: Mapping[str, Any], keys: set[str], reference: Callable[[str], Check]) -> list[Check]:
    out = _lengths(node, "minItems", "maxItems", list)
    prefix = [_compile(item, reference) for item in node.get("prefixItems", ())]
    if prefix:
        out.append(lambda v: not isinstance(v, list) or all(c(x) for c, x in zip(prefix, v, strict=False)))
    if "items" in keys:
        item = _compile(node["items"], reference)
        skip = len(prefix)

        def items(v: Any) -> bool:
            if isinstance(v, list):
                for x in v[skip:] if skip else v:
                    if not item(x):
                        return False
            return True
        out.append(items)
    return out


def _objects(node: Mapping[str, Any], keys: set[str], reference: Callable[[str], Check]) -> list[Check]:
    if not keys & {"required", "properties", "additionalProperties", "propertyNames"}:
        return []
    required = tuple(node.get("required", ()))
    properties = {k: _compile(s, reference) for k, s in node.get("properties", {}).items()}
    extra = _compile(node["additionalProperties"], reference) if "additionalProperties" in keys else None
    name = _compile(node["propertyNames"], reference) if "propertyNames" in keys else None

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for key in required:
            if key not in v:
                return False
        for key, item in v.items():
            inner = properties.get(key)
            if inner is not None:
                if not inner(item):
                    return False
            elif extra is not None and not extra(item):
                return False
            if name is not None and not name(key):
                return False
        return True
    return [check]


def _logic(node: Mapping[str, Any], keys: set[str], reference: Callable[[str], Check]) -> list[Check]:
    out: list[Check] = []
    if "not" in keys:
        inner = _compile(node["not"], reference)
        out.append(lambda v: not inner(v))  # sound only where ``inner`` is exact: kept to required/type/enum
        _require_exact(node["not"])
    if "anyOf" in keys:
        options = [_compile(s, reference) for s in node["anyOf"]]
        out.append(lambda v: any(c(v) for c in options))
    if "oneOf" in keys:
        options = [_compile(s, reference) for s in node["oneOf"]]
        out.append(lambda v: sum(c(v) for c in options) == 1)
        for option in node["oneOf"]:
            _require_exact(option)
    if "if" in keys:
        condition = _compile(node["if"], reference)
        _require_exact(node["if"])
        then, otherwise = _compile(node.get("then", True), reference), _compile(node.get("else", True), reference)
        out.append(lambda v: then(v) if condition(v) else otherwise(v))
    return out


EXACT = frozenset({"required", "anyOf", "not", "properties", "const", "enum"})


def _require_exact(node: Mapping[str, Any] | bool) -> None:
    """A subschema whose answer is negated or counted must be decided exactly (a stricter answer would
    turn into a laxer one): only ``required``, ``properties`` of ``const``/``enum``, and their combinations."""
    if isinstance(node, bool):
        return
    unknown = set(node) - EXACT - ANNOTATIONS
    if unknown:
        raise ValueError(f"keywords not compiled under not / oneOf / if: {sorted(unknown)}")
    for key in ("anyOf",):
        for option in node.get(key, ()):
            _require_exact(option)
    if "not" in node:
        _require_exact(node["not"])
    for sub in node.get("properties", {}).values():
        _require_exact(sub)


HANDLED = frozenset({"$ref", "type", "enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum",
                     "minItems", "maxItems", "prefixItems", "items", "required", "properties",
                     "additionalProperties", "propertyNames", "not", "anyOf", "oneOf", "if", "then", "else"})

"""A safe evaluator for the column expressions in schemas and configs.

Expressions are parsed with :mod:`ast` and interpreted node by node; nothing is ever passed to
``eval``/``exec``.  Only arithmetic, comparisons, boolean logic, branch names, numeric constants and a
whitelist of element-wise numpy / awkward functions (spelled ``np.x`` / ``ak.x`` as in weaver-core
configs) are allowed.  Anything else (attributes other than whitelisted functions, dunders, imports,
subscripts, comprehensions, lambdas) is rejected with a message naming it.

Nothing an expression does can write to its inputs or grow without bound: functions take at most their
input arguments positionally (``np.abs(a, b)`` would write into ``b``), keywords are limited to read-only
options with constant values (no ``out=``, ``where=``, ``copy=``), constants and exponents are bounded and
every constant sub-expression is folded in float64 at validation, so ``((10**18)**64)**64`` is refused by
``schema check`` instead of hanging a worker in Python's unbounded integer arithmetic (constants stay Python
numbers at evaluation, so numpy's dtype rules, and weaver-core's results, are unchanged).
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from jetstore.errors import ExpressionError

MAX_SOURCE_LENGTH = 2000
MAX_NODES = 400
MAX_DEPTH = 40
MAX_CONSTANT_EXPONENT = 64
MAX_INT_CONSTANT = 10**18
MAX_FOLDED_MAGNITUDE = 1e300

NUMPY_FUNCTIONS = frozenset({
    "abs", "absolute", "sqrt", "cbrt", "square", "log", "log1p", "log2", "log10", "exp", "expm1", "exp2", "sin",
    "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
    "arctanh", "hypot", "minimum", "maximum", "fmin", "fmax", "clip", "where", "sign", "floor", "ceil", "round",
    "rint", "trunc", "isfinite", "isnan", "isinf", "nan_to_num", "logical_and", "logical_or", "logical_not",
    "logical_xor", "power", "fmod", "mod", "remainder", "heaviside", "deg2rad", "rad2deg"
})
AWKWARD_FUNCTIONS = frozenset({
    "num", "sum", "prod", "max", "min", "mean", "std", "var", "any", "all", "count", "count_nonzero", "argmax",
    "argmin", "ones_like", "zeros_like", "full_like", "fill_none", "is_none", "firsts", "where", "local_index",
    "nan_to_num"
})
NUMPY_CONSTANTS = {"pi": np.pi, "e": np.e, "inf": np.inf, "nan": np.nan}
BUILTIN_FUNCTIONS: dict[str, Callable[..., Any]] = {"abs": np.abs, "min": np.minimum, "max": np.maximum}
FLAT_AWKWARD: dict[str, Callable[..., Any]] = {"ones_like": np.ones_like, "zeros_like": np.zeros_like,
                                               "full_like": np.full_like}
# at most this many positional arguments (the inputs; a further positional argument is ``out`` or a copy flag)
POSITIONAL_LIMITS = {"clip": 3, "where": 3, "round": 2, "nan_to_num": 1, "full_like": 2, "ones_like": 1,
                     "zeros_like": 1, "fill_none": 2, "local_index": 1, "firsts": 1, "is_none": 1}
# at least this many: with fewer, the function means something else (np.where(c) is the indices where c holds)
REQUIRED_POSITIONAL = {"where": 3}
REDUCTIONS = frozenset({"num", "sum", "prod", "max", "min", "mean", "std", "var", "any", "all", "count",
                        "count_nonzero", "argmax", "argmin"})
# keywords that only choose what to compute; their values must be constants
READ_ONLY_KEYWORDS = frozenset({"axis", "keepdims", "mask_identity", "nan", "posinf", "neginf", "decimals", "ddof",
                                "a_min", "a_max"})
MODULES = {"np": (np, NUMPY_FUNCTIONS), "numpy": (np, NUMPY_FUNCTIONS), "ak": (ak, AWKWARD_FUNCTIONS),
           "awkward": (ak, AWKWARD_FUNCTIONS)}

BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}
UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert, ast.Not: np.logical_not,
}
COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
BOOLEAN_OPERATORS = {ast.And: np.logical_and, ast.Or: np.logical_or}


@dataclass(frozen=True)
class Expression:
    """A validated expression; ``names`` are the input columns it reads."""

    source: str
    names: frozenset[str]
    tree: ast.Expression

    @classmethod
    def parse(cls, source: str, where: str = "expression") -> Expression:
        """Parse and validate ``source``; ``where`` names the config key for error messages."""
        if not isinstance(source, str) or not source.strip():
            raise ExpressionError(f"{where}: expected a non-empty expression string, got {source!r}")
        if len(source) > MAX_SOURCE_LENGTH:
            raise ExpressionError(f"{where}: expression longer than {MAX_SOURCE_LENGTH} characters")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"{where}: invalid expression {source!r}: {exc.msg}") from None
        names: set[str] = set()
        _Validator(source, where, names).check(tree)
        return cls(source=source, names=frozenset(names), tree=tree)

    @functools.cached_property
    def element_wise(self) -> bool:
        """True when the expression maps each input element to one output element with numpy alone (its
        awkward calls, if any, are ``ak.ones_like``-style), so it can run on flat arrays."""
        return all(node.attr in FLAT_AWKWARD for node in ast.walk(self.tree)
                   if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                   and node.value.id in ("ak", "awkward"))

    def evaluate(self, columns: Mapping[str, Any], flat: bool = False) -> Any:
        """Evaluate on arrays; ``columns`` must provide every name in ``self.names``. ``flat``: inputs are
        flat numpy arrays and the ``ak.*_like`` functions act on them (see :attr:`element_wise`)."""
        missing = sorted(self.names - set(columns))
        if missing:
            raise ExpressionError(f"expression {self.source!r}: unknown column(s) {', '.join(missing)}")
        try:
            return _evaluate(self.tree.body, columns, FLAT_AWKWARD if flat else None)
        except ExpressionError:
            raise
        except Exception as exc:  # numpy / awkward errors become one clear message
            raise ExpressionError(f"expression {self.source!r} failed: {type(exc).__name__}: {exc}") from None


class _Validator:
    """Walks the AST once, rejecting anything outside the whitelist and collecting column names."""

    def __init__(self, source: str, where: str, names: set[str]):
        self.source, self.where, self.names, self.count = source, where, names, 0

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(f"{self.where}: {what} is not allowed in expression {self.source!r}")

    def check(self, node: ast.AST, depth: int = 0) -> None:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            raise self.fail("an expression this large or deeply nested")
        match node:
            case ast.Expression(body=body):
                self.check(body, depth + 1)
            case ast.Constant(value=value):
                if isinstance(value, bool) or value is None:
                    return
                if (isinstance(value, int) and abs(value) <= MAX_INT_CONSTANT) or isinstance(value, float):
                    return
                raise self.fail(f"the constant {value!r}")
            case ast.Name(id=name):
                if name.startswith("_"):
                    raise self.fail(f"the name {name!r}")
                if name in MODULES:
                    raise self.fail(f"using the module {name!r} as a value")
                if name not in BUILTIN_FUNCTIONS:
                    self.names.add(name)
            case ast.Attribute():
                self.check_attribute(node, called=False)
            case ast.BinOp(left=left, op=op, right=right):
                if type(op) not in BINARY_OPERATORS:
                    raise self.fail(f"the operator {type(op).__name__}")
                if isinstance(op, ast.Pow) and not _small_exponent(right):
                    raise self.fail("a power whose exponent is not a small constant")
                self.check(left, depth + 1)
                self.check(right, depth + 1)
                self.fold(node)
            case ast.UnaryOp(op=op, operand=operand):
                self.check(operand, depth + 1)
            case ast.BoolOp(values=values):
                for term in values:
                    self.check(term, depth + 1)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                for comparison in ops:
                    if type(comparison) not in COMPARISONS:
                        raise self.fail(f"the comparison {type(comparison).__name__}")
                for operand in [left, *comparators]:
                    self.check(operand, depth + 1)
            case ast.Call(func=func, args=args, keywords=keywords):
                if isinstance(func, ast.Attribute):
                    self.check_attribute(func, called=True)
                elif not (isinstance(func, ast.Name) and func.id in BUILTIN_FUNCTIONS):
                    raise self.fail(f"calling {ast.unparse(func)!r}")
                name = func.attr if isinstance(func, ast.Attribute) else func.id
                if len(args) > _positional_limit(func, name):
                    raise self.fail(f"{ast.unparse(func)}() with {len(args)} positional arguments (only its inputs "
                                    "may be positional: a further one can be an output array)")
                if len(args) < REQUIRED_POSITIONAL.get(name, 0):  # np.where(c) gives indices, not values
                    raise self.fail(f"{ast.unparse(func)}() with {len(args)} positional argument(s) (it takes "
                                    f"{REQUIRED_POSITIONAL[name]}: condition, value if true, value if false)")
                for arg in args:
                    if isinstance(arg, ast.Starred):
                        raise self.fail("argument unpacking")
                    self.check(arg, depth + 1)
                for keyword in keywords:
                    if keyword.arg is None:
                        raise self.fail("keyword unpacking (**)")
                    if keyword.arg not in READ_ONLY_KEYWORDS:
                        raise self.fail(f"the keyword {keyword.arg}= "
                                        f"(allowed: {', '.join(sorted(READ_ONLY_KEYWORDS))})")
                    if not isinstance(_constant(keyword.value), int | float):
                        raise self.fail(f"a non-constant value for {keyword.arg}=")
                    self.check(keyword.value, depth + 1)
            case _:
                raise self.fail(f"{type(node).__name__} ({ast.unparse(node)!r})")

    def fold(self, node: ast.BinOp) -> None:
        """A sub-expression of constants only is computed now, in float64: one out of range is refused."""
        value = _folded(node)
        if value is not None and not abs(value) <= MAX_FOLDED_MAGNITUDE:  # also catches inf and nan
            raise self.fail(f"the constant expression {ast.unparse(node)!r} (its value is out of range)")

    def check_attribute(self, node: ast.Attribute, called: bool) -> None:
        if not isinstance(node.value, ast.Name) or node.value.id not in MODULES:
            raise self.fail(f"the attribute access {ast.unparse(node)!r}")
        _, allowed = MODULES[node.value.id]
        if called and node.attr in allowed:
            return
        if not called and node.value.id in ("np", "numpy") and node.attr in NUMPY_CONSTANTS:
            return
        raise self.fail(f"{ast.unparse(node)!r}")


def _positional_limit(func: ast.expr, name: str) -> int:
    """How many positional arguments a whitelisted function takes without writing to one of them."""
    if isinstance(func, ast.Name):  # abs, min, max as numpy ufuncs
        return 1 if name == "abs" else 2
    module = MODULES[func.value.id][0]  # type: ignore[attr-defined]
    if module is np and isinstance(getattr(np, name), np.ufunc):
        return getattr(np, name).nin
    if module is ak and name in REDUCTIONS:
        return 2  # array, axis
    return POSITIONAL_LIMITS.get(name, 1)


def _constant(node: ast.AST) -> Any:
    """The value of a (signed) numeric constant node, else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign, node = (-1 if isinstance(node.op, ast.USub) else 1), node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return sign * node.value
    return None


def _folded(node: ast.AST) -> float | None:
    """The float64 value (for bitwise operators: a bound on the magnitude) of a sub-expression made of numeric
    constants and operators only, else None."""
    if isinstance(node, ast.Constant):
        value = _constant(node)
        return None if value is None else float(value)
    if isinstance(node, ast.UnaryOp):
        operand = _folded(node.operand)
        return None if operand is None else abs(operand) + 1  # -x, +x, ~x
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPERATORS:
        left, right = _folded(node.left), _folded(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.BitAnd | ast.BitOr | ast.BitXor):
            return 2 * max(abs(left), abs(right))
        with np.errstate(all="ignore"):
            try:
                return float(BINARY_OPERATORS[type(node.op)](np.float64(left), np.float64(right)))
            except ZeroDivisionError:
                return 0.0
    return None


def _small_exponent(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool) and abs(node.value) <= MAX_CONSTANT_EXPONENT)


def _evaluate(node: ast.AST, columns: Mapping[str, Any], flat_ak: Mapping[str, Callable] | None) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            return BUILTIN_FUNCTIONS[name] if name in BUILTIN_FUNCTIONS else columns[name]
        case ast.Attribute(value=ast.Name(id=module), attr=attr):
            if flat_ak is not None and module in ("ak", "awkward"):
                return flat_ak[attr]
            return NUMPY_CONSTANTS[attr] if attr in NUMPY_CONSTANTS else getattr(MODULES[module][0], attr)
        case ast.BinOp(left=left, op=op, right=right):
            return BINARY_OPERATORS[type(op)](_evaluate(left, columns, flat_ak), _evaluate(right, columns, flat_ak))
        case ast.UnaryOp(op=op, operand=operand):
            return UNARY_OPERATORS[type(op)](_evaluate(operand, columns, flat_ak))
        case ast.BoolOp(op=op, values=values):
            result = _evaluate(values[0], columns, flat_ak)
            for other in values[1:]:
                result = BOOLEAN_OPERATORS[type(op)](result, _evaluate(other, columns, flat_ak))
            return result
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            result, lhs = None, _evaluate(left, columns, flat_ak)
            for comparison, comparator in zip(ops, comparators, strict=True):
                rhs = _evaluate(comparator, columns, flat_ak)
                term = COMPARISONS[type(comparison)](lhs, rhs)
                result = term if result is None else np.logical_and(result, term)
                lhs = rhs
            return result
        case ast.Call(func=func, args=args, keywords=keywords):
            function = _evaluate(func, columns, flat_ak)
            return function(*(_evaluate(a, columns, flat_ak) for a in args),
                            **{k.arg: _evaluate(k.value, columns, flat_ak) for k in keywords if k.arg})
    raise ExpressionError(f"unsupported expression node {type(node).__name__}")  # unreachable after validation

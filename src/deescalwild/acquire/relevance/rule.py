"""The selection rule: a small boolean expression over the judged features, and why a video
passed or failed it.

Grammar (a strict subset of Python expressions, parsed with `ast` and checked node by node, so
nothing is ever executed):

- numbers (`2`, `0.5`);
- the group counts `police`, `interaction`, `escalation`, `deescalation`, `exclusions`;
- any of the 30 feature names, valued 0 or 1;
- comparisons `== != < <= > >=` (chains like `1 <= police <= 3` work as in Python);
- `and`, `or`, `not`, parentheses.

A condition (an operand of `and`/`or`/`not`, or the whole rule) is a comparison, a feature name
(true when present) or a combination of those; a group count must be compared
(`police >= 2`, not `police`). Anything else (calls, attributes, subscripts, arithmetic,
strings, unknown names) is a `RuleError` naming the column and, for a misspelt name, the
nearest known one.

The default is the paper's (`tasks.DEFAULT_RULE`): no exclusion flag, and Police >= 2, and
(Escalation >= 3 or De-escalation >= 3).

Reasons: a rejection names every part of the top-level `and` that failed, with the values that
made it fail (`police >= 2 failed: police = 1`); an acceptance names the parts that held. For
`exclusions` the value shown is the flags that are set (`exclusions == 0 failed:
training_range_context`). Parts are joined by "; ", so `failed_parts` can read them back.
"""

from __future__ import annotations

import ast
import difflib
import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deescalwild.acquire.relevance.taxonomy import (
    FEATURE_NAMES,
    GROUPS,
    exclusion_flags,
    group_scores,
)
from deescalwild.acquire.tasks import DEFAULT_RULE
from deescalwild.errors import DeescalwildError

__all__ = ["DEFAULT_RULE", "NAMES", "Rule", "RuleError", "compile_rule", "evaluate",
           "failed_parts"]

NAMES: tuple[str, ...] = (*GROUPS, *FEATURE_NAMES)
_COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%",
           ast.FloorDiv: "//", ast.Pow: "**", ast.In: "in", ast.NotIn: "not in",
           ast.Is: "is", ast.IsNot: "is not", ast.USub: "-", ast.UAdd: "+", ast.Invert: "~",
           ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}
_WHAT = {ast.Call: "a function call", ast.Attribute: "attribute access",
         ast.Subscript: "a subscript", ast.Lambda: "a lambda", ast.IfExp: "an if-expression",
         ast.NamedExpr: "an assignment", ast.List: "a list", ast.Tuple: "a tuple",
         ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string",
         ast.ListComp: "a comprehension", ast.GeneratorExp: "a comprehension"}
_ALLOWED = "numbers, group counts, feature names, == != < <= > >=, and, or, not, parentheses"


class RuleError(DeescalwildError):
    """A selection rule that is not in the grammar: one line with the column."""


def _where(rule: str, node_or_line: ast.AST | int, col: int | None = None) -> str:
    """`column C` (`line L, column C` in a rule of several lines); 1-based."""
    if isinstance(node_or_line, ast.AST):
        line = getattr(node_or_line, "lineno", 1)
        col = getattr(node_or_line, "col_offset", 0) + 1
    else:
        line = node_or_line
    lines = rule.count("\n") + 1
    return f"column {col}" if lines == 1 else f"line {line}, column {col}"


def _fail(rule: str, node: ast.AST, message: str, allowed: bool = True) -> RuleError:
    tail = f" (allowed: {_ALLOWED})" if allowed else ""
    return RuleError(f"rule {rule!r}: {_where(rule, node)}: {message}{tail}")


class _Checker:
    """Walks the tree and refuses every node outside the grammar."""

    def __init__(self, rule: str) -> None:
        self.rule = rule

    def condition(self, node: ast.AST) -> None:
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self.condition(v)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.condition(node.operand)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise _fail(self.rule, node, f"operator {_SYMBOL.get(type(op), '?')!r} is "
                                "not allowed")
            for operand in (node.left, *node.comparators):
                self.term(operand)
        elif isinstance(node, ast.Name):
            self.name(node)
            if node.id in GROUPS:
                raise _fail(self.rule, node, f"{node.id!r} is a count: compare it, e.g. "
                            f"{node.id} >= 2", allowed=False)
        else:
            self.other(node, "a condition")

    def term(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            self.name(node)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            pass
        else:
            self.other(node, "a number, a group count or a feature name")

    def name(self, node: ast.Name) -> None:
        if node.id in NAMES:
            return
        close = difflib.get_close_matches(node.id.lower(), NAMES, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _fail(self.rule, node, f"unknown name {node.id!r}{hint}", allowed=not close)

    def other(self, node: ast.AST, expected: str) -> None:
        if isinstance(node, ast.Constant):
            what = f"the constant {node.value!r}"
        elif isinstance(node, (ast.BinOp, ast.UnaryOp)):
            what = f"arithmetic ({_SYMBOL.get(type(node.op), '?')!r})"
        else:
            what = _WHAT.get(type(node), type(node).__name__)
        raise _fail(self.rule, node, f"{what} is not allowed here; expected {expected}")


@dataclass(frozen=True)
class Rule:
    """A checked rule: its text and its expression tree."""

    text: str
    tree: ast.expr

    def __call__(self, features: Mapping[str, bool | int]) -> tuple[bool, str]:
        return evaluate(self, features)


@functools.lru_cache(maxsize=64)
def compile_rule(text: str) -> Rule:
    """Parse and check a rule; `RuleError` (one line, with the column) when it is not in the
    grammar."""
    if not text or not text.strip():
        raise RuleError("rule is empty; e.g. " + DEFAULT_RULE)
    source = text.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        hint = ""
        if "=" in source and not any(op in source for op in ("==", "<=", ">=", "!=")):
            hint = " (use == to compare)"
        elif "&&" in source or "||" in source:
            hint = " (write and / or)"
        line, col, msg = e.lineno or 1, e.offset or 0, e.msg
        if col <= 0:  # Python's offset for "the text ended here"
            col, msg = len(source.splitlines()[line - 1]) + 1, "the rule ends too early"
        raise RuleError(f"rule {source!r}: {_where(source, line, col)}: {msg}{hint}") from None
    _Checker(source).condition(tree.body)
    return Rule(source, tree.body)


# --- evaluation --------------------------------------------------------------------------
def _values(features: Mapping[str, bool | int]) -> dict[str, int]:
    missing = [n for n in FEATURE_NAMES if n not in features]
    if missing:
        raise ValueError(f"features missing: {', '.join(missing)}")
    vals = {n: int(bool(features[n])) for n in FEATURE_NAMES}
    vals.update(group_scores(vals))
    return vals


def _term(node: ast.expr, vals: Mapping[str, int]) -> float:
    if isinstance(node, ast.Name):
        return vals[node.id]
    return node.value  # type: ignore[attr-defined]  # a checked numeric Constant


def _holds(node: ast.expr, vals: Mapping[str, int]) -> bool:
    """Truth of a condition, with Python's short-circuit order."""
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_holds(v, vals) for v in node.values)
        return any(_holds(v, vals) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return not _holds(node.operand, vals)
    if isinstance(node, ast.Name):
        return bool(vals[node.id])
    assert isinstance(node, ast.Compare)
    left = _term(node.left, vals)
    for op, right_node in zip(node.ops, node.comparators):
        right = _term(right_node, vals)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _shown(node: ast.expr, vals: Mapping[str, int]) -> str:
    """The values of the names a part uses, left to right: `police = 1`; for `exclusions`,
    the flags that are set."""
    names = sorted((n for n in ast.walk(node) if isinstance(n, ast.Name)),
                   key=lambda n: (n.lineno, n.col_offset))
    out: list[str] = []
    for name in dict.fromkeys(n.id for n in names):
        if name == "exclusions" and vals[name]:
            out.append(", ".join(exclusion_flags(vals)))
        else:
            out.append(f"{name} = {vals[name]}")
    return ", ".join(out)


def _part(node: ast.expr, vals: Mapping[str, int], verb: str) -> str:
    shown = _shown(node, vals)
    return f"{ast.unparse(node)} {verb}" + (f": {shown}" if shown else "")


def _explain(node: ast.expr, vals: Mapping[str, int], held: bool) -> list[str]:
    """The parts that decided the verdict: for a failed `and`, each failing conjunct; for an
    `or` that held, each disjunct that held; anything else is one part."""
    if isinstance(node, ast.BoolOp):
        conj = isinstance(node.op, ast.And)
        if conj != held:  # a failed `and` or a held `or`: its deciding operands
            return [p for v in node.values if _holds(v, vals) == held
                    for p in _explain(v, vals, held)]
        if conj:  # a held `and`: every conjunct held
            return [p for v in node.values for p in _explain(v, vals, held)]
    return [_part(node, vals, "held" if held else "failed")]


def evaluate(rule: str | Rule, features: Mapping[str, bool | int]) -> tuple[bool, str]:
    """(accepted, reason) for one video's features (all 30; 0/1 or booleans)."""
    compiled = rule if isinstance(rule, Rule) else compile_rule(rule)
    vals = _values(features)
    accepted = _holds(compiled.tree, vals)
    return accepted, "; ".join(_explain(compiled.tree, vals, accepted))


def failed_parts(reason: str) -> list[str]:
    """The rule parts named in a rejection reason (`police >= 2`, ...), for counting the
    commonest reasons in a report."""
    return [p.split(" failed", 1)[0].strip() for p in reason.split("; ") if " failed" in p]


"""A plain-Python fast path for event validation, compiled from `schemas/event.schema.json`.

fastjsonschema's generated code raises and catches an exception per `if`/`then` branch, which costs
~10 µs per event; ingest needs a few. `check(item)` answers the same question with dict/str/int tests, so
valid events skip the generic validators. It is only a short cut: False means "not sure", and the caller
then runs the full path (which also writes the error messages), so a False never changes behaviour.

Nothing is retyped from the schema. At first use the schema is compiled into a decision tree: every
`allOf` of `if`/`then` is resolved ahead of time by evaluating each `if` (with `jsonschema` itself) on every
combination of the enum values of the fields it looks at (`type`, then `survey` × `scale`), so a leaf is a
flat rule — allowed fields, required fields, one checker per field with the limits, enums and patterns of the
merged subschemas. A keyword this compiler does not know disables the fast path (everything falls back)
instead of being ignored, so a schema change can make ingest slower but never laxer.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import jsonschema

from cxpulse.domain.event_schema import event_schema

Checker = Callable[[Any], bool]

#: Keywords that never constrain a value.
_ANNOTATIONS: Final = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "definitions", "examples", "default"}
)
#: Distinct cached valid strings per patterned field (touchpoint, channel, currency … repeat a lot).
_CACHE_LIMIT: Final = 4096


class Unsupported(Exception):
    """The schema uses a keyword (or a shape) the fast path does not compile."""


class _Absent:
    """Key of a combination in which a discriminating field is missing."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = _Absent()


# ------------------------------------------------------------------------------------------ field checkers
def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow a local `$ref` (`#/definitions/x`); a `$ref` ignores its siblings in draft-07."""
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or seen > 16:
            raise Unsupported(f"$ref {ref!r}")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema, seen = node, seen + 1
    return schema


def _string_checker(s: dict[str, Any]) -> Checker:
    lo = int(s.get("minLength", 0))
    hi = int(s["maxLength"]) if "maxLength" in s else None
    enum = _string_enum(s)
    if "pattern" not in s:

        def plain(v: Any) -> bool:
            if type(v) is not str:
                return False
            n = len(v)
            return n >= lo and (hi is None or n <= hi) and (enum is None or v in enum)

        return plain
    # jsonschema: re.search, where `$` also matches before a final "\n"; fastjsonschema rewrites `$` to `\Z`.
    # Refusing a trailing "\n" accepts only what both accept.
    search = re.compile(s["pattern"]).search
    valid: set[str] = set()

    def patterned(v: Any) -> bool:
        if type(v) is not str:
            return False
        if v in valid:
            return True
        n = len(v)
        if n < lo or (hi is not None and n > hi) or (enum is not None and v not in enum):
            return False
        if search(v) is None or v.endswith("\n"):
            return False
        if len(valid) < _CACHE_LIMIT:
            valid.add(v)
        return True

    return patterned


def _string_enum(s: dict[str, Any]) -> frozenset[str] | None:
    values: list[Any] | None = None
    if "enum" in s:
        values = list(s["enum"])
    if "const" in s:
        values = [s["const"]] if values is None else [v for v in values if v == s["const"]]
    if values is None:
        return None
    if not all(type(v) is str for v in values):
        raise Unsupported("enum/const of non-strings")
    return frozenset(values)


def _number_checker(s: dict[str, Any], integer: bool) -> Checker:
    """JSON numbers: bool is not one; for "integer", 9.0 is one (draft-07, jsonschema and fastjsonschema)."""
    lo = s.get("minimum")
    hi = s.get("maximum")
    xlo = s.get("exclusiveMinimum")
    xhi = s.get("exclusiveMaximum")
    for bound in (lo, hi, xlo, xhi):
        if bound is not None and type(bound) not in (int, float):
            raise Unsupported(f"numeric bound {bound!r}")

    def number(v: Any) -> bool:
        t = type(v)
        if t is int:
            pass
        elif t is float:
            if integer and not v.is_integer():  # also refuses inf and nan
                return False
        else:
            return False
        # NaN fails every comparison here, so it falls back to the full path, which decides.
        return (
            (lo is None or v >= lo)
            and (hi is None or v <= hi)
            and (xlo is None or v > xlo)
            and (xhi is None or v < xhi)
        )

    return number


def _anything(v: Any) -> bool:
    return True


def _type_only(python_type: type) -> Checker:
    def exact(v: Any) -> bool:
        return type(v) is python_type

    return exact


_KEYWORDS_BY_TYPE: Final = {
    "string": frozenset({"type", "minLength", "maxLength", "pattern", "enum", "const"}),
    "integer": frozenset({"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "number": frozenset({"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}),
    "boolean": frozenset({"type"}),
    "object": frozenset({"type"}),
    "array": frozenset({"type"}),
    "null": frozenset({"type"}),
}


def _field_checker(subschemas: list[dict[str, Any]]) -> Checker | None:
    """One checker for the AND of a field's subschemas (None: anything goes)."""
    merged: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for s in subschemas:
        s = {k: v for k, v in s.items() if k not in _ANNOTATIONS}
        if any(k in merged and merged[k] != v for k, v in s.items()):
            rest.append(s)  # the same keyword twice with different values: AND two checkers
        else:
            merged.update(s)
    if rest:
        parts = [c for c in (_field_checker([merged]), *(_field_checker([r]) for r in rest)) if c]

        def both(v: Any) -> bool:
            return all(c(v) for c in parts)

        return both
    if not merged:
        return None
    kind = merged.get("type")
    if kind is None and ("enum" in merged or "const" in merged):
        kind = "string"  # only string enums are supported; _string_enum refuses the others
    if not isinstance(kind, str) or kind not in _KEYWORDS_BY_TYPE:
        raise Unsupported(f"field schema {merged!r}")
    unknown = set(merged) - _KEYWORDS_BY_TYPE[kind]
    if unknown:
        raise Unsupported(f"keywords {sorted(unknown)} for type {kind}")
    if kind == "string":
        return _string_checker(merged)
    if kind in ("integer", "number"):
        return _number_checker(merged, integer=kind == "integer")
    return _type_only({"boolean": bool, "object": dict, "array": list, "null": type(None)}[kind])


# ------------------------------------------------------------------------------------------ object rules
@dataclass
class _Acc:
    """Object-level constraints gathered so far for one combination of discriminating values."""

    allowed: frozenset[str] | None = None
    required: frozenset[str] = frozenset()
    fields: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    forbidden: frozenset[str] = frozenset()
    pending: list[tuple[Any, Any]] = field(default_factory=list)  # (if, then) not resolved yet

    def copy(self) -> _Acc:
        return _Acc(
            self.allowed, self.required, {k: list(v) for k, v in self.fields.items()}, self.forbidden, []
        )


def _restrict(acc: _Acc, names: Iterable[str]) -> None:
    names = frozenset(names)
    acc.allowed = names if acc.allowed is None else acc.allowed & names


def _absorb(acc: _Acc, schema: Any, root: dict[str, Any]) -> None:
    """Add an object-level schema's constraints to `acc` (conditionals are kept for later)."""
    schema = _resolve(schema, root)
    if schema is True:
        return
    if not isinstance(schema, dict):
        raise Unsupported(f"object schema {schema!r}")
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "type":
            if value != "object":
                raise Unsupported(f"root type {value!r}")
        elif key == "required":
            acc.required |= frozenset(value)
        elif key == "properties":
            for name, sub in value.items():
                sub = _resolve(sub, root)
                if sub is False:
                    acc.forbidden |= {name}
                elif sub is not True:
                    acc.fields.setdefault(name, []).append(sub)
        elif key == "additionalProperties":
            if value is False:
                _restrict(acc, schema.get("properties", {}))
            elif value is not True:
                raise Unsupported("additionalProperties other than true/false")
        elif key == "propertyNames":
            if set(value) != {"enum"} or not all(type(n) is str for n in value["enum"]):
                raise Unsupported("propertyNames other than an enum of names")
            _restrict(acc, value["enum"])
        elif key == "allOf":
            for part in value:
                _absorb(acc, part, root)
        elif key == "if":
            acc.pending.append((value, schema.get("then", True)))
        elif key == "then":
            pass  # taken with its `if`
        else:
            raise Unsupported(f"keyword {key!r}")


def _condition_fields(condition: Any) -> set[str]:
    """Field names an `if` looks at; it may only test presence and const/enum values of fields."""
    if isinstance(condition, bool):
        return set()
    if not isinstance(condition, dict):
        raise Unsupported(f"condition {condition!r}")
    names: set[str] = set()
    for key, value in condition.items():
        if key in _ANNOTATIONS:
            continue
        if key == "required":
            names.update(value)
        elif key == "properties":
            for name, sub in value.items():
                if not isinstance(sub, dict) or not set(sub) <= {"const", "enum"}:
                    raise Unsupported(f"condition on {name!r}: {sub!r}")
                names.add(name)
        elif key in ("not", "allOf", "anyOf"):
            for sub in value if isinstance(value, list) else [value]:
                names |= _condition_fields(sub)
        else:
            raise Unsupported(f"condition keyword {key!r}")
    return names


@dataclass(frozen=True, slots=True)
class Leaf:
    """A flat rule: what an item of one fully resolved kind (e.g. an nps answer) must look like."""

    closed: bool  # only the fields in `checkers` are allowed (each has one, maybe `_anything`)
    required: frozenset[str]
    forbidden: frozenset[str]
    checkers: dict[str, Checker]

    def accepts(self, item: dict[str, Any]) -> bool:
        keys = item.keys()
        if not keys >= self.required:
            return False
        if self.forbidden and not self.forbidden.isdisjoint(keys):
            return False
        checkers = self.checkers
        if self.closed:
            for name, value in item.items():
                checker = checkers.get(name)
                if checker is None or not checker(value):
                    return False
            return True
        for name, value in item.items():
            checker = checkers.get(name)
            if checker is not None and not checker(value):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Switch:
    """Choose the next rule by the values of the fields the schema's `if`s look at."""

    fields: tuple[str, ...]
    table: dict[Any, Switch | Leaf]


def _leaf(acc: _Acc, shared: dict[str, Checker | None], decided: frozenset[str]) -> Leaf:
    """The flat rule; fields in `decided` are not re-checked: the switches matched them to an enum value."""
    allowed, forbidden = acc.allowed, acc.forbidden
    if allowed is not None:
        allowed, forbidden = allowed - forbidden, frozenset()
    checkers: dict[str, Checker] = {}
    for name, subs in acc.fields.items():
        if allowed is not None and name not in allowed:
            continue
        key = json.dumps(subs, sort_keys=True)  # one checker (and one cache of valid strings) per rule
        if key not in shared:
            shared[key] = _field_checker(subs)
        checker = shared[key]
        if name in decided or checker is None:
            checker = _anything
        checkers[name] = checker
    if allowed is not None:
        checkers = {name: checkers.get(name, _anything) for name in sorted(allowed)}
    else:
        checkers = {name: c for name, c in checkers.items() if c is not _anything}
    return Leaf(allowed is not None, acc.required, forbidden, checkers)


def _build(
    acc: _Acc,
    root: dict[str, Any],
    domains: dict[str, list[Any]],
    shared: dict[str, Checker | None],
    decided: frozenset[str] = frozenset(),
) -> Switch | Leaf:
    if not acc.pending:
        return _leaf(acc, shared, decided)
    pending = acc.pending
    names = sorted(set().union(*(_condition_fields(cond) for cond, _ in pending)))
    for name in names:
        if name not in domains:
            raise Unsupported(f"an `if` looks at {name!r}, which is not an enum field")
    conditions = [(jsonschema.Draft7Validator(cond), then) for cond, then in pending]
    table: dict[Any, Switch | Leaf] = {}
    for combo in itertools.product(*(domains[n] for n in names)):
        probe = {n: v for n, v in zip(names, combo, strict=True) if v is not ABSENT}
        branch = acc.copy()
        for validator, then in conditions:
            if validator.is_valid(probe):
                _absorb(branch, then, root)
        key = combo[0] if len(names) == 1 else combo
        table[key] = _build(branch, root, domains, shared, decided | frozenset(names))
    return Switch(tuple(names), table)


def compile_schema(schema: dict[str, Any]) -> Switch | Leaf:
    """The decision tree of `schema`; raises Unsupported if any part of it is not understood."""
    acc = _Acc()
    _absorb(acc, schema, schema)
    domains: dict[str, list[Any]] = {}
    for name, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, schema)
        values = _string_enum(sub) if isinstance(sub, dict) else None
        if values is not None:
            domains[name] = [*sorted(values), ABSENT]
    return _build(acc, schema, domains, {})


# ------------------------------------------------------------------------------------------ entry point
@cache
def _tree() -> Switch | Leaf | None:
    try:
        return compile_schema(event_schema())
    except Unsupported:
        return None  # every item takes the full path: slower, never laxer


def check(item: Any) -> bool:
    """True only if `item` is valid per the event schema; False means "ask the full validator"."""
    return accepts(_tree(), item)


def accepts(tree: Switch | Leaf | None, item: Any) -> bool:
    """True only if `item` is valid per the schema `tree` was compiled from (None: never sure)."""
    if type(item) is not dict:
        return False
    node = tree
    while isinstance(node, Switch):
        # Discriminators are string enums (or absent): anything else is invalid or exotic, so not sure.
        fields = node.fields
        key: Any
        if len(fields) == 1:
            key = item.get(fields[0], ABSENT)
            if type(key) is not str and key is not ABSENT:
                return False
        elif len(fields) == 2:
            a, b = item.get(fields[0], ABSENT), item.get(fields[1], ABSENT)
            if (type(a) is not str and a is not ABSENT) or (type(b) is not str and b is not ABSENT):
                return False
            key = (a, b)
        else:
            key = tuple(item.get(name, ABSENT) for name in fields)
            if not all(type(v) is str or v is ABSENT for v in key):
                return False
        node = node.table.get(key)
    return node is not None and node.accepts(item)

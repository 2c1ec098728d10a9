"""Read Docker API requests the way dockerd 20.10 reads them, and no looser.

The access service checks a request and dockerd acts on it, so both must read
the same bytes the same way. dockerd's Go decoder (encoding/json) matches
object keys to struct fields case-insensitively, lets a later key win, ignores
unknown keys and turns ``null`` into the zero value; its query parser
(net/url) keeps every repetition of a parameter and the handlers read the
first. This module closes each of those gaps from the checking side:

* :func:`loads` -- strict JSON: UTF-8 only, no NaN/Infinity, no lone
  surrogates, no key given twice in one object in any spelling Go would match
  to the same field (ASCII case-insensitive; non-ASCII keys are refused
  outright, which removes Go's Unicode folding: U+017F matches ``s``, U+212A
  matches ``k``), bounded nesting. Every failure is :class:`Malformed`.
* :func:`canonical` -- a decoded body checked against the Go type of the route
  (tables in :mod:`ds01.docker.apispec`): a NEW plain structure with Go's
  canonical field names and values typed as Go would decode them. Unknown
  keys are refused, except the few a schema lists as dropped.
* :func:`parse_query` / :func:`build_query` -- the allow-listed query
  parameters of one operation, each single-valued one at most once, and the
  canonical upstream query written from the parsed form alone.

Pure: no I/O, stdlib only. The rules are tabled for docs/docker.md by
:func:`ds01.docker.apispec.schema_table`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from urllib.parse import quote, unquote_to_bytes


class Malformed(ValueError):
    """A request the service cannot read exactly as dockerd would: answered 400.

    ``message`` names the key path (``HostConfig.Binds[2]: ...``)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------
# Strict JSON
# --------------------------------------------------------------------------

_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Bad(dict):
    """An object :func:`loads` refuses; the reason is found with its path after
    parsing (the parser's hook does not know where it is)."""

    problem = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    seen: dict[str, str] = {}
    for key, _ in pairs:
        if not key.isascii():
            bad = _Bad(pairs)
            bad.problem = f"{key!r}: non-ASCII object keys are refused"
            return bad
        folded = key.lower()
        if folded in seen:
            bad = _Bad(pairs)
            bad.problem = f"{key!r}: key given twice (also as {seen[folded]!r})"
            return bad
        seen[folded] = key
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise Malformed(f"number {text[:40]} is out of range")
    return value


def _depth(text: str) -> int:
    brackets = _NOT_BRACKET.sub("", _STRINGS.sub("", text))
    return max(accumulate(_DEPTH_STEP[c] for c in brackets), default=0)


def loads(raw: bytes, max_depth: int = 64) -> Any:
    """The JSON value of ``raw``, or :class:`Malformed`. See the module doc."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Malformed(f"body is not UTF-8 (byte {e.start})") from None
    if _depth(text) > max_depth:
        raise Malformed(f"JSON nested deeper than {max_depth}")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_constant=_refuse_constant,
            parse_float=_finite,
        )
        _check_tree(value, "")
    except Malformed:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, int digit limit
        raise Malformed(f"invalid JSON: {e}") from None
    return value


def _check_tree(value: Any, path: str) -> None:
    if isinstance(value, _Bad):
        raise Malformed(f"{path or '(body)'}: {value.problem}")
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise Malformed(f"{path or '(body)'}: lone UTF-16 surrogate in a string")
    elif isinstance(value, dict):  # keys are ASCII (see _pairs)
        for k, v in value.items():
            _check_tree(v, _join(path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_tree(v, f"{path}[{i}]")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def dumps(value: Any) -> bytes:
    """The service's own JSON for dockerd (compact, ASCII-escaped)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


# --------------------------------------------------------------------------
# Go types
# --------------------------------------------------------------------------


class GoType:
    """One Go type as encoding/json decodes it into. ``canon`` returns the
    canonical value or raises :class:`Malformed` naming ``path``; it is never
    given ``None`` (the caller drops null, Go's zero value)."""

    go = "?"

    def canon(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def zero(self, path: str) -> Any:
        """What Go stores for a ``null`` list element or map value."""
        raise Malformed(f"{path}: null is not a {self.go}")

    def _want(self, value: Any, path: str) -> Malformed:
        got = "null" if value is None else type(value).__name__
        got = {"dict": "object", "list": "array", "str": "string", "bool": "boolean"}.get(got, got)
        return Malformed(f"{path}: expected {self.go}, got {got}")


class Bool(GoType):
    go = "bool"

    def canon(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self._want(value, path)
        return value

    def zero(self, path: str) -> bool:
        return False


class Str(GoType):
    go = "string"

    def canon(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self._want(value, path)
        return value

    def zero(self, path: str) -> str:
        return ""


@dataclass(frozen=True)
class _IntRange:
    lo: int
    hi: int


class Int(GoType):
    """A Go integer: a JSON number without fraction or exponent (Go's ParseInt
    refuses ``1.0`` and ``1e3``), within the type's range."""

    def __init__(self, go: str, bits: int, signed: bool = True):
        self.go = go
        self.range = (
            _IntRange(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if signed
            else _IntRange(0, (1 << bits) - 1)
        )

    def canon(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._want(value, path)
        if not self.range.lo <= value <= self.range.hi:
            raise Malformed(f"{path}: {value} is out of range for {self.go}")
        return value

    def zero(self, path: str) -> int:
        return 0


class List(GoType):
    def __init__(self, elem: GoType):
        self.elem = elem
        self.go = f"[]{elem.go}"

    def canon(self, value: Any, path: str) -> list:
        if not isinstance(value, list):
            raise self._want(value, path)
        return [
            self.elem.zero(f"{path}[{i}]") if v is None else self.elem.canon(v, f"{path}[{i}]")
            for i, v in enumerate(value)
        ]

    def zero(self, path: str) -> list:
        return []


class Array(List):
    """A Go array ``[n]T``: Go zero-fills a short JSON array and skips extra
    elements; extra elements are refused here, short arrays are filled."""

    def __init__(self, elem: GoType, n: int):
        super().__init__(elem)
        self.n = n
        self.go = f"[{n}]{elem.go}"

    def canon(self, value: Any, path: str) -> list:
        out = super().canon(value, path)
        if len(out) > self.n:
            raise Malformed(f"{path}: more than {self.n} elements for {self.go}")
        return out + [self.elem.zero(path)] * (self.n - len(out))


class StrSlice(GoType):
    """strslice.StrSlice: a JSON string or an array of strings."""

    go = "string or []string"

    def canon(self, value: Any, path: str) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self._want(value, path)
        return List(Str()).canon(value, path)

    def zero(self, path: str) -> list[str]:
        return []


class Map(GoType):
    """A Go ``map[string]T``. Keys are exact in Go (no folding), but
    :func:`loads` refuses keys that differ only in case anyway."""

    def __init__(self, elem: GoType):
        self.elem = elem
        self.go = f"map[string]{elem.go}"

    def canon(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self._want(value, path)
        return {
            k: self.elem.zero(_join(path, k)) if v is None else self.elem.canon(v, _join(path, k))
            for k, v in value.items()
        }

    def zero(self, path: str) -> dict:
        return {}


@dataclass(eq=False)
class Struct(GoType):
    """A Go struct as encoding/json fills it.

    + name: the Go type, for messages and the rules table
    + fields: canonical JSON name (the json tag, else the Go field name, with
      embedded structs flattened) -> type
    + dropped: keys newer clients send that dockerd 20.10 has no field for; they
      are removed (any value), everything else unknown is refused
    + finish: builds the decoded meaning from the canonical fields and the
      names given (null ones included), where Go does more than fill fields
      (the create wrapper's deprecated keys)
    """

    name: str
    fields: Mapping[str, GoType]
    dropped: frozenset[str] = frozenset()
    finish: Callable[[dict, frozenset[str]], dict] | None = None
    _fold: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.go = self.name
        self._fold = {}
        for key in self.fields:
            if key.lower() in self._fold:  # Go would pick one: such a table is wrong
                raise AssertionError(f"{self.name}: {key} and {self._fold[key.lower()]} fold equal")
            self._fold[key.lower()] = key
        self._dropped = {k.lower() for k in self.dropped}
        if overlap := self._dropped & set(self._fold):
            raise AssertionError(f"{self.name}: dropped keys are fields: {sorted(overlap)}")

    def canon(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            raise self._want(value, path or "(body)")
        out: dict[str, Any] = {}
        given: dict[str, str] = {}
        for key, v in value.items():
            where = _join(path, key)
            if not isinstance(key, str) or not key.isascii():
                raise Malformed(f"{where}: non-ASCII object keys are refused")
            folded = key.lower()
            if folded in given:
                raise Malformed(f"{where}: key given twice (also as {given[folded]!r})")
            given[folded] = key
            name = self._fold.get(folded)
            if name is None:
                if folded in self._dropped or v is None:  # Go stores nothing for either
                    continue
                raise Malformed(f"{where}: unknown field of {self.name}")
            if v is not None:
                out[name] = self.fields[name].canon(v, _join(path, name))
        if self.finish is None:
            return out
        return self.finish(out, frozenset(self._fold[k] for k in given if k in self._fold))

    def zero(self, path: str) -> dict:
        return {}


class Ptr(GoType):
    """A pointer to a struct as a list element or map value (``[]*units.Ulimit``,
    ``map[string]*EndpointSettings``): null there is a nil pointer, which
    dockerd does not expect (a nil Ulimit makes its inspect handler panic), so
    it is refused."""

    def __init__(self, elem: Struct):
        self.elem = elem
        self.go = f"*{elem.go}"

    def canon(self, value: Any, path: str) -> dict:
        return self.elem.canon(value, path)

    def zero(self, path: str) -> dict:
        raise Malformed(f"{path}: null is not a {self.elem.go}")


def canonical(value: Any, schema: GoType, path: str = "") -> Any:
    """``value`` (from :func:`loads`) as dockerd would decode it into
    ``schema``: a new structure with canonical keys only, ``null`` dropped.
    A top-level ``null`` is Go's empty struct."""
    if value is None:
        return schema.zero(path)
    return schema.canon(value, path)


# --------------------------------------------------------------------------
# Query parameters
# --------------------------------------------------------------------------

# How a handler reads a parameter (api/server/httputils/form.go, the routers):
STR = "str"  # r.Form.Get / FormValue: the first value
BOOL = "bool"  # httputils.BoolValue(OrDefault): given -> true unless "", 0, no, false, none
BOOL_EMPTY_DEFAULT = "bool?"  # read as BoolValue, but an empty value means "not given"
PARSEBOOL = "parsebool"  # strconv.ParseBool; an empty value means "not given"
INT = "int"  # strconv.Atoi / ParseInt of the first value; empty means not given
LIST = "list"  # r.Form["x"]: every value, in order
JSON = "json"  # a JSON document in one value (filters, labels, buildargs, ...)

_FALSE = frozenset({"", "0", "no", "false", "none"})
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501 -- unicode.IsSpace
_PARSEBOOL = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class QuerySpec:
    """The query an operation reads.

    + operation: Docker's swagger operationId (API 1.41)
    + method, path: its route, as the swagger path template (``/containers/{id}/logs``)
    + params: name -> STR | BOOL | BOOL_EMPTY_DEFAULT | PARSEBOOL | INT | LIST | JSON
    + dropped: parameters clients send that dockerd 20.10 does not read
    """

    operation: str
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    dropped: frozenset[str] = frozenset()


def _bool_value(value: str) -> bool:
    """httputils.BoolValue: Go's TrimSpace (not Python's wider strip) and ToLower."""
    return value.strip(_GO_SPACE).lower() not in _FALSE


def _unescape(part: str, what: str) -> str:
    if _ESCAPE.search(part):
        raise Malformed(f"query: invalid percent-escape in {what} {part[:60]!r}")
    try:
        return unquote_to_bytes(part.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"query: {what} {part[:60]!r} is not UTF-8") from None


def _pairs_of(raw: str) -> list[tuple[str, str]]:
    """Go's url.ParseQuery, refusing what it refuses (';', bad escapes)."""
    out = []
    for item in raw.split("&"):
        if ";" in item:
            raise Malformed("query: ';' is not a separator (Go refuses it)")
        if not item:
            continue
        key, _, value = item.partition("=")
        out.append((_unescape(key, "name"), _unescape(value, "value")))
    return out


def parse_query(raw: str, spec: QuerySpec) -> dict[str, Any]:
    """The parameters of ``raw`` (the text after '?') that ``spec`` allows,
    typed: str, bool, int, list[str], or the JSON value. Parameters given with
    an empty value that the handler reads as "not given" are left out."""
    out: dict[str, Any] = {}
    for key, value in _pairs_of(raw):
        kind = spec.params.get(key)
        if kind is None:
            if key in spec.dropped:
                continue
            raise Malformed(f"query: unknown parameter {key!r} for {spec.operation}")
        if kind == LIST:
            out.setdefault(key, []).append(value)
            continue
        if key in out or f"\0{key}" in out:
            raise Malformed(f"query: parameter {key!r} given twice")
        if kind == STR:
            out[key] = value
        elif kind == BOOL:
            out[key] = _bool_value(value)
        elif value == "" and kind in (BOOL_EMPTY_DEFAULT, PARSEBOOL, INT, JSON):
            out[f"\0{key}"] = None  # seen, so a second one is still a repetition
        elif kind == BOOL_EMPTY_DEFAULT:
            out[key] = _bool_value(value)
        elif kind == PARSEBOOL:
            if value not in _PARSEBOOL:
                raise Malformed(f"query: {key}={value[:40]!r} is not a boolean")
            out[key] = _PARSEBOOL[value]
        elif kind == INT:
            if not _GO_INT.fullmatch(value):
                raise Malformed(f"query: {key}={value[:40]!r} is not an integer")
            out[key] = int(value)
        elif kind == JSON:
            try:
                out[key] = loads(value.encode())
            except Malformed as e:
                raise Malformed(f"query: {key}: {e.message}") from None
        else:  # a table error, not a client's
            raise AssertionError(f"{spec.operation}: {key} has unknown kind {kind!r}")
    return {k: v for k, v in out.items() if not k.startswith("\0")}


def build_query(parsed: Mapping[str, Any], spec: QuerySpec) -> str:
    """The canonical query for dockerd, from ``parsed`` (as :func:`parse_query`
    returns it, possibly changed by the decision) and nothing else."""
    parts = []
    for key, value in parsed.items():
        kind = spec.params.get(key)
        if kind is None:
            raise AssertionError(f"{spec.operation}: {key!r} is not a parameter it reads")
        if kind == LIST:
            values = [_text(v, key) for v in value]
        elif kind in (BOOL, BOOL_EMPTY_DEFAULT, PARSEBOOL):
            if not isinstance(value, bool):
                raise AssertionError(f"{key}: not a bool: {value!r}")
            values = ["1" if value else "0"]
        elif kind == INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise AssertionError(f"{key}: not an int: {value!r}")
            values = [str(value)]
        elif kind == JSON:
            values = [dumps(value).decode()]
        else:
            values = [_text(value, key)]
        parts += [f"{quote(key, safe='')}={quote(v, safe='')}" for v in values]
    return "&".join(parts)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise AssertionError(f"{key}: not a string: {value!r}")
    return value


def query_pairs(raw: str) -> list[tuple[str, str]]:
    """Go's url.ParseQuery as (name, value) pairs, refusing what it refuses."""
    return _pairs_of(raw)

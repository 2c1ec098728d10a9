"""Property tests for ds01.docker.schema: bodies generated from the schemas
themselves (every field, at random), then respelled, duplicated and nested the
ways Go's decoder would accept; query strings with repeated parameters."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ds01.docker import apispec
from ds01.docker.schema import (
    BOOL,
    BOOL_EMPTY_DEFAULT,
    INT,
    JSON,
    LIST,
    PARSEBOOL,
    STR,
    Array,
    Bool,
    GoType,
    Int,
    List,
    Malformed,
    Map,
    Ptr,
    Str,
    StrSlice,
    Struct,
    build_query,
    canonical,
    dumps,
    loads,
    parse_query,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAP_KEYS = st.from_regex(r"[a-z0-9./_-]{1,8}", fullmatch=True)  # lower case: no two fold equal


def values(t: GoType, depth: int = 0) -> st.SearchStrategy:
    """Canonical values of ``t``: what canonical() must return unchanged."""
    if isinstance(t, Bool):
        return st.booleans()
    if isinstance(t, Int):
        return st.integers(t.range.lo, t.range.hi)
    if isinstance(t, Str):
        return st.text(max_size=8)
    if isinstance(t, StrSlice):
        return st.lists(st.text(max_size=6), max_size=3)
    if isinstance(t, Array):
        return st.lists(values(t.elem, depth + 1), min_size=t.n, max_size=t.n)
    if isinstance(t, List):
        return st.lists(values(t.elem, depth + 1), max_size=2 if depth < 3 else 0)
    if isinstance(t, Map):
        return st.dictionaries(MAP_KEYS, values(t.elem, depth + 1), max_size=2 if depth < 3 else 0)
    if isinstance(t, Ptr):
        return values(t.elem, depth)
    if isinstance(t, Struct):
        return st.fixed_dictionaries(
            {}, optional={k: values(v, depth + 1) for k, v in t.fields.items()}
        )
    raise AssertionError(t)


# The create wrapper's canonical form holds no top-level HostConfig keys.
CREATE_SHAPE = Struct(
    "create (canonical shape)",
    {
        **apispec.CONFIG_FIELDS,
        "HostConfig": apispec.HOST_CONFIG,
        "NetworkingConfig": apispec.NETWORKING_CONFIG,
    },
)
SHAPES = {**apispec.SCHEMAS, "ContainerCreate": CREATE_SHAPE}
bodies = st.sampled_from(sorted(SHAPES)).flatmap(
    lambda op: st.tuples(st.just(op), values(SHAPES[op]))
)


def respell(value, t: GoType, rng) -> object:
    """``value`` with struct keys in random ASCII case (map keys kept: Go's maps are exact)."""
    if isinstance(t, Ptr):
        t = t.elem
    if isinstance(t, Struct):
        return {
            "".join(c.swapcase() if rng.random() < 0.5 else c for c in k): respell(
                v, t.fields[k], rng
            )
            for k, v in value.items()
        }
    if isinstance(t, List) and not isinstance(t, StrSlice):
        return [respell(v, t.elem, rng) for v in value]
    if isinstance(t, Map):
        return {k: respell(v, t.elem, rng) for k, v in value.items()}
    return value


def only_canonical_keys(value, t: GoType) -> bool:
    if isinstance(t, Ptr):
        t = t.elem
    if isinstance(t, Struct):
        return isinstance(value, dict) and all(
            k in t.fields and only_canonical_keys(v, t.fields[k]) for k, v in value.items()
        )
    if isinstance(t, List) and not isinstance(t, StrSlice):
        return all(only_canonical_keys(v, t.elem) for v in value)
    if isinstance(t, Map):
        return all(only_canonical_keys(v, t.elem) for v in value.values())
    return True


@FAST
@given(bodies)
def test_canonical_bodies_come_back_unchanged(body):
    op, value = body
    assert canonical(loads(dumps(value)), apispec.SCHEMAS[op]) == value


@FAST
@given(bodies, st.data())
def test_any_spelling_reads_as_the_canonical_one(body, data):
    op, value = body
    spelled = respell(value, SHAPES[op], data.draw(st.randoms(use_true_random=False)))
    out = canonical(loads(json.dumps(spelled).encode()), apispec.SCHEMAS[op])
    assert out == value
    assert only_canonical_keys(out, SHAPES[op])


TOP = Struct("top", {**apispec.HOST_CONFIG_FIELDS, "Image": Str()})


@FAST
@given(values(TOP), st.data())
def test_top_level_host_config_fields_land_in_host_config(top, data):
    """The deprecated shape (no HostConfig object): the same meaning, canonical keys only."""
    spelled = respell(top, TOP, data.draw(st.randoms(use_true_random=False)))
    out = canonical(loads(json.dumps(spelled).encode()), apispec.SCHEMAS["ContainerCreate"])
    host = {k: v for k, v in top.items() if k != "Image"}
    want = ({"Image": top["Image"]} if "Image" in top else {}) | (
        {"HostConfig": host} if host else {}
    )
    assert out == want
    assert only_canonical_keys(out, CREATE_SHAPE)


def _objects(value, t: GoType, path=()):
    """Every struct object in ``value`` with its path: where a duplicate can hide."""
    if isinstance(t, Ptr):
        t = t.elem
    if isinstance(t, Struct):
        yield path, value, t
        for k, v in value.items():
            yield from _objects(v, t.fields[k], (*path, k))
    elif isinstance(t, List) and not isinstance(t, StrSlice):
        for i, v in enumerate(value):
            yield from _objects(v, t.elem, (*path, i))
    elif isinstance(t, Map):
        for k, v in value.items():
            yield from _objects(v, t.elem, (*path, k))


def _text_with_extra_pair(value, target_path, extra: tuple[str, str], before: bool, path=()) -> str:
    """JSON text of ``value`` with one more raw pair in the object at ``target_path``."""
    if isinstance(value, dict):
        pairs = [
            f"{json.dumps(k)}:{_text_with_extra_pair(v, target_path, extra, before, (*path, k))}"
            for k, v in value.items()
        ]
        if path == target_path:
            pair = f"{json.dumps(extra[0])}:{extra[1]}"
            pairs = [pair, *pairs] if before else [*pairs, pair]
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list):
        return (
            "["
            + ",".join(
                _text_with_extra_pair(v, target_path, extra, before, (*path, i))
                for i, v in enumerate(value)
            )
            + "]"
        )
    return json.dumps(value)


@FAST
@given(bodies, st.data())
def test_no_duplicate_spelling_gets_through(body, data):
    op, value = body
    objects = [(p, o, t) for p, o, t in _objects(value, SHAPES[op]) if o]
    if not objects:
        return
    path, obj, t = data.draw(st.sampled_from(objects))
    key = data.draw(st.sampled_from(sorted(obj)))
    variant = "".join(c.swapcase() if data.draw(st.booleans()) else c for c in key)
    extra = data.draw(
        values(t.fields[key])
    )  # a second value, of the right type, possibly a forbidden one
    text = _text_with_extra_pair(
        value, path, (variant, json.dumps(extra)), data.draw(st.booleans())
    )
    with pytest.raises(Malformed, match="twice"):
        loads(text.encode())


@FAST
@given(st.text(alphabet="sSkK", min_size=1, max_size=6), st.sampled_from(["\u017f", "\u212a"]))
def test_keys_with_unicode_that_go_folds_are_refused(key, fold):
    spelled = key.replace("s", fold) if fold == "\u017f" else key.replace("k", fold)
    raw = json.dumps({spelled: 1}).encode()
    if spelled.isascii():
        assert loads(raw) == {spelled: 1}
    else:
        with pytest.raises(Malformed, match="non-ASCII"):
            loads(raw)


@FAST
@given(st.integers(1, 400), st.lists(st.sampled_from(["[", '{"a":']), min_size=1, max_size=3))
def test_nesting_is_bounded_and_never_a_recursion_error(depth, openers):
    opens = [openers[i % len(openers)] for i in range(depth)]
    closes = ["]" if o == "[" else "}" for o in reversed(opens)]
    raw = ("".join(opens) + "1" + "".join(closes)).encode()
    if depth > 64:
        with pytest.raises(Malformed, match="nested deeper"):
            loads(raw)
    else:
        assert loads(raw) is not None
    with pytest.raises(Malformed):  # never RecursionError, however it is cut
        loads(raw[: len(raw) // 2] if depth > 1 else b"[")


# --------------------------------------------------------------------------
# Query strings
# --------------------------------------------------------------------------

_TEXT = st.text(max_size=6)
_SAMPLES = {
    STR: _TEXT,
    BOOL: st.sampled_from(["1", "0", "true", "False", "yes", "no", "none", "", " 1 "]),
    BOOL_EMPTY_DEFAULT: st.sampled_from(["1", "0", "true", "false"]),
    PARSEBOOL: st.sampled_from(["1", "0", "t", "F", "TRUE", "false"]),
    INT: st.integers(-(1 << 63), (1 << 63) - 1).map(str),
    JSON: st.dictionaries(MAP_KEYS, st.lists(_TEXT, max_size=2), max_size=2).map(json.dumps),
    LIST: _TEXT,
}
specs = st.sampled_from(sorted(q for q in apispec.QUERIES if apispec.QUERIES[q].params))


def _query(pairs) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


@FAST
@given(specs, st.data())
def test_a_single_valued_parameter_given_twice_is_refused(op, data):
    spec = apispec.QUERIES[op]
    singles = sorted(k for k, kind in spec.params.items() if kind != LIST)
    if not singles:
        return
    key = data.draw(st.sampled_from(singles))
    first, second = data.draw(_SAMPLES[spec.params[key]]), data.draw(_SAMPLES[spec.params[key]])
    others = data.draw(st.lists(st.sampled_from(sorted(spec.params)), max_size=3, unique=True))
    pairs = [(k, data.draw(_SAMPLES[spec.params[k]])) for k in others if k != key]
    pairs[data.draw(st.integers(0, len(pairs))) : 0] = [(key, first)]
    pairs.insert(data.draw(st.integers(0, len(pairs))), (key, second))
    with pytest.raises(Malformed, match=f"'{key}' given twice"):
        parse_query(_query(pairs), spec)


@FAST
@given(specs, st.data())
def test_parsed_queries_rebuild_to_the_same_meaning_and_lists_keep_their_order(op, data):
    spec = apispec.QUERIES[op]
    keys = data.draw(st.lists(st.sampled_from(sorted(spec.params)), max_size=4, unique=True))
    pairs = []
    for k in keys:
        n = data.draw(st.integers(1, 3)) if spec.params[k] == LIST else 1
        pairs += [(k, data.draw(_SAMPLES[spec.params[k]])) for _ in range(n)]
    pairs = data.draw(st.permutations(pairs))
    parsed = parse_query(_query(pairs), spec)
    for k in keys:
        if spec.params[k] == LIST:
            assert parsed[k] == [v for kk, v in pairs if kk == k]
    rebuilt = build_query(parsed, spec)
    assert parse_query(rebuilt, spec) == parsed
    assert all(part.split("=")[0] in spec.params for part in rebuilt.split("&") if part)


@FAST
@given(specs, st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True))
def test_unknown_parameters_are_refused(op, key):
    spec = apispec.QUERIES[op]
    if key in spec.params or key in spec.dropped:
        return
    with pytest.raises(Malformed, match="unknown parameter"):
        parse_query(f"{key}=1", spec)

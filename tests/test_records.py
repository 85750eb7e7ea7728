"""The emitted records keep the frozen dataclass contract while built the quick way
(sensor.records._quick_construction): fields, equality, hash, immutability, copy and pickle."""

from __future__ import annotations

import copy
import dataclasses
import functools
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.records import EMITTED_RECORDS, NATIVE_BUILD, Recipient, SmtpSession, python_new


def _values(cls: type) -> dict[str, Any]:
    """Distinct hashable values for every field of `cls`."""
    return {f.name: f"{cls.__name__}-{i}" for i, f in enumerate(dataclasses.fields(cls))}


def _frozen_way(cls: type, values: dict[str, Any]) -> Any:
    """The record as a frozen dataclass builds it: object.__setattr__ per field."""
    obj = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
def test_positional_and_keyword_construction_give_the_frozen_record(cls: type) -> None:
    values = _values(cls)
    want = _frozen_way(cls, values)
    for got in (cls(*values.values()), cls(**values)):
        assert type(got) is cls
        assert got == want
        assert dataclasses.astuple(got) == tuple(values.values())
        assert hash(got) == hash(want)
        assert repr(got) == repr(want)
    assert cls(*values.values()) != cls(*[f"{v}x" for v in values.values()])


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
def test_records_stay_immutable(cls: type) -> None:
    rec = cls(**_values(cls))
    name = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(rec, name, "changed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(rec, name)
    assert getattr(rec, name) == f"{cls.__name__}-0"


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
def test_copy_pickle_and_replace(cls: type) -> None:
    rec = cls(**_values(cls))
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(rec, proto))
        assert back == rec and type(back) is cls
    assert copy.copy(rec) == rec and copy.deepcopy(rec) == rec
    name = dataclasses.fields(cls)[-1].name
    changed = dataclasses.replace(rec, **{name: "new"})
    assert type(changed) is cls and getattr(changed, name) == "new"
    assert getattr(rec, name) != "new"


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
def test_wrong_arguments_raise_type_error(cls: type) -> None:
    values = list(_values(cls).values())
    with pytest.raises(TypeError):
        cls(*values, no_such_field=1)
    with pytest.raises(TypeError):
        cls(*values, "one too many")
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(TypeError):
        cls(*values, **{first: "twice"})


def test_defaults_and_factories() -> None:
    required = [f"v{i}" for i in range(len(dataclasses.fields(SmtpSession)) - 2)]
    s = SmtpSession(*required)
    assert s.transactions == () and s.midstream is False
    assert SmtpSession(*required, midstream=True).midstream
    assert SmtpSession(*required, transactions=("t",)).transactions == ("t",)
    with pytest.raises(TypeError):
        SmtpSession(*required[:-1])


# --------------------------------------------------------------------------------------------
# the C construction (sensor/_build.c) against its Python reading, records.python_new

_MARK = object()


def _both(cls: type, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(the record or the TypeError) as calling `cls` gives it, and as python_new does."""
    results: list[Any] = []
    for build in (cls, functools.partial(python_new(cls), cls)):
        try:
            results.append(build(*args, **kwargs))
        except TypeError as exc:  # the same refusal; the wording may differ
            results.append(exc)
    return results[0], results[1]


def _same(got: Any, want: Any) -> None:
    if isinstance(want, TypeError):
        assert isinstance(got, TypeError), got
        return
    assert type(got) is type(want)
    for f in dataclasses.fields(want):  # the very objects: a default is shared, not copied
        assert getattr(got, f.name) is getattr(want, f.name) or (
            f.default_factory is not dataclasses.MISSING
            and getattr(got, f.name) == getattr(want, f.name)
        )


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_native_construction_matches_python_new(cls: type, data: st.DataObject) -> None:
    fs = dataclasses.fields(cls)
    names = [f.name for f in fs]
    values = [object() for _ in fs]
    n_pos = data.draw(st.integers(0, len(fs) + 1), label="positional")
    args = values[:n_pos] + ([_MARK] if n_pos > len(fs) else [])
    keyword = data.draw(st.lists(st.sampled_from([*names, "no_such_field"]), unique=True),
                        label="keywords")  # fmt: skip
    kwargs = {k: object() for k in keyword}
    got, want = _both(cls, args, kwargs)
    _same(got, want)


def test_native_builder_uses_defaults_and_factories_as_python_new() -> None:
    fs = dataclasses.fields(SmtpSession)
    required = [f"v{i}" for i in range(len(dataclasses.fields(SmtpSession)) - 2)]
    for args, kwargs in (
        (required, {}),
        (required[:-1], {}),
        (required, {"midstream": True}),
        (required, {"transactions": ("t",), "midstream": False}),
        ([], {f.name: v for f, v in zip(fs[:-2], required, strict=True)}),
    ):
        got, want = _both(SmtpSession, list(args), dict(kwargs))
        _same(got, want)


def test_native_builder_refuses_what_it_cannot_build() -> None:
    assert NATIVE_BUILD  # tests/test_native.py: the suite runs on the native build
    from sensor._build import Builder

    names = ("uid", "ts")
    with pytest.raises(TypeError):  # a name that is no slot of the class
        Builder(Recipient, ("nope",), (None,), (None,), _MARK)
    with pytest.raises(ValueError):  # tuples of different lengths
        Builder(Recipient, names, (None,), (None, None), _MARK)
    with pytest.raises(TypeError):
        Builder(Recipient, [1], (None,), (None,), _MARK)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # a record class built for another one
        Recipient.__new__(SmtpSession, "a", {}, 250, None, "ok")
    with pytest.raises(TypeError):
        Recipient.__new__("not a class")
    with pytest.raises(TypeError):
        Builder.__new__(Builder)()  # not initialised


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
def test_signature_is_that_of_the_dataclass_init(cls: type) -> None:
    """inspect.signature(cls), which hypothesis's builds() and other introspection read: the
    fields in order, the required ones without default."""
    import inspect

    params = list(inspect.signature(cls).parameters.values())
    fs = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fs]
    for p, f in zip(params, fs, strict=True):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert (p.default is inspect.Parameter.empty) == required, f.name
        if f.default is not dataclasses.MISSING:
            assert p.default is f.default


@pytest.mark.parametrize("cls", EMITTED_RECORDS, ids=lambda c: c.__name__)
def test_native_reduce_matches_the_python_reducer(cls: type) -> None:
    """What pickle calls for a record (copyreg): the C Builder's reduce, which reads the
    slots, gives what records._reducer (attrgetter on the fields) gives, the very objects."""
    import copyreg

    from sensor.records import _BUILDERS, _reducer

    rec = cls(*[object() for _ in dataclasses.fields(cls)])
    reduce = copyreg.dispatch_table[cls]
    assert reduce is not None and getattr(reduce, "__self__", None) is _BUILDERS[cls]
    got, want = reduce(rec), _reducer(cls)(rec)
    assert got[0] is want[0] is cls
    assert len(got[1]) == len(want[1]) and all(a is b for a, b in zip(got[1], want[1], strict=True))
    other = next(c for c in EMITTED_RECORDS if c is not cls)
    with pytest.raises(TypeError):  # another class's record, or no record
        reduce(other(*[None for _ in dataclasses.fields(other)]))
    with pytest.raises(TypeError):
        reduce("not a record")
    unset = object.__new__(cls)  # a slot never set: attrgetter's AttributeError
    with pytest.raises(AttributeError):
        _reducer(cls)(unset)
    with pytest.raises(AttributeError):
        reduce(unset)

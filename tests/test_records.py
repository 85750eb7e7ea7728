"""The emitted records keep the frozen dataclass contract while built the quick way
(sensor.records._quick_construction): fields, equality, hash, immutability, copy and pickle."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from sensor.records import EMITTED_RECORDS, SmtpSession


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

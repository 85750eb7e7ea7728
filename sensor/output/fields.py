"""Typed access to the fields of a record read back from JSON, with one error per bad field."""

from __future__ import annotations

import math
from typing import Any, Final

from sensor.errors import RecordError

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1
"""Integers a record may hold: what orjson reads back as integers (it reads larger ones as
floats), far beyond any counter of the sensor."""


def shown(v: object) -> str:
    """A short description of a JSON value for an error message."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, int) and v.bit_length() > 128:  # repr() of a huge integer may even fail
        return f"an integer of {v.bit_length()} bits"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """One JSON object of a record; each getter checks a field's type or raises RecordError
    naming the field by its path (`transactions[0].rcpt_to[1].code`)."""

    __slots__ = ("d", "where")

    def __init__(self, d: object, where: str = "") -> None:
        if not isinstance(d, dict):
            raise RecordError(f"{where or 'record'}: expected an object, got {shown(d)}")
        self.d: dict[str, Any] = d
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _bad(self, key: str, expected: str, v: object) -> RecordError:
        return RecordError(f"{self._name(key)}: expected {expected}, got {shown(v)}")

    def _get(self, key: str) -> Any:
        try:
            return self.d[key]
        except KeyError:
            raise RecordError(f"{self._name(key)}: missing") from None

    def text(self, key: str) -> str:
        """A string field."""
        v = self._get(key)
        if not isinstance(v, str):
            raise self._bad(key, "a string", v)
        return v

    def opt_text(self, key: str) -> str | None:
        """A string or null."""
        v = self._get(key)
        if v is not None and not isinstance(v, str):
            raise self._bad(key, "a string or null", v)
        return v

    def integer(self, key: str) -> int:
        """An integer of at most 64 bits (not a boolean, not a float)."""
        v = self._get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(key, "an integer", v)
        if not INT_MIN <= v <= INT_MAX:
            raise self._bad(key, "a 64-bit integer", v)
        return v

    def opt_integer(self, key: str) -> int | None:
        """An integer of at most 64 bits, or null."""
        v = self._get(key)
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(key, "an integer or null", v)
        return self.integer(key)

    def number(self, key: str) -> float:
        """A finite number, as a float (an integer is accepted: JSON does not tell 1 from 1.0).
        NaN and infinities are refused: no record has them, and they would be written as null."""
        v = self._get(key)
        if isinstance(v, float):
            if not math.isfinite(v):
                raise self._bad(key, "a finite number", v)
            return v
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(key, "a number", v)
        try:
            return float(v)
        except OverflowError:
            raise self._bad(key, "a finite number", v) from None

    def opt_number(self, key: str) -> float | None:
        """A number or null."""
        return None if self._get(key) is None else self.number(key)

    def flag(self, key: str, default: bool | None = None) -> bool:
        """A boolean; with a default, the field may be absent (added within the schema version)."""
        if default is not None and key not in self.d:
            return default
        v = self._get(key)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false", v)
        return v

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings, as a tuple."""
        v = self._get(key)
        if not isinstance(v, list):
            raise self._bad(key, "a list of strings", v)
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise RecordError(f"{self._name(key)}[{i}]: expected a string, got {shown(item)}")
        return tuple(v)

    def text_map(self, key: str) -> dict[str, str]:
        """An object of string values."""
        v = self._get(key)
        if not isinstance(v, dict):
            raise self._bad(key, "an object of strings", v)
        for k, item in v.items():
            if not isinstance(item, str):
                raise RecordError(f"{self._name(key)}.{k}: expected a string, got {shown(item)}")
        return dict(v)

    def opt_text_map(self, key: str) -> dict[str, str | None]:
        """An object of string-or-null values."""
        v = self._get(key)
        if not isinstance(v, dict):
            raise self._bad(key, "an object of strings or nulls", v)
        for k, item in v.items():
            if item is not None and not isinstance(item, str):
                raise RecordError(
                    f"{self._name(key)}.{k}: expected a string or null, got {shown(item)}")
        return dict(v)

    def count_map(self, key: str) -> dict[str, int]:
        """An object of 64-bit integer values."""
        v = self._get(key)
        if not isinstance(v, dict):
            raise self._bad(key, "an object of integers", v)
        for k, item in v.items():
            if not isinstance(item, int) or isinstance(item, bool) or not (
                    INT_MIN <= item <= INT_MAX):
                raise RecordError(
                    f"{self._name(key)}.{k}: expected a 64-bit integer, got {shown(item)}")
        return dict(v)

    def code_map(self, key: str) -> dict[int, int]:
        """An object whose keys are 64-bit integers written as decimal strings, of integer
        values."""
        out: dict[int, int] = {}
        for k, n in self.count_map(key).items():
            try:
                code = int(k)
            except ValueError:
                code = None
            if code is None or str(code) != k or not INT_MIN <= code <= INT_MAX:
                raise RecordError(
                    f"{self._name(key)}: expected 64-bit integer keys, got {shown(k)}")
            out[code] = n
        return out

    def objects(self, key: str) -> list[Fields]:
        """A list of objects, each as Fields."""
        v = self._get(key)
        if not isinstance(v, list):
            raise self._bad(key, "a list of objects", v)
        name = self._name(key)
        return [Fields(item, f"{name}[{i}]") for i, item in enumerate(v)]

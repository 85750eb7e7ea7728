"""Every feature of the schema has an analyst's phrase, a unit and a family of alert kinds."""

from __future__ import annotations

from sensor.detect.rules import AlertKind
from sensor.features.schema import (
    FAMILIES,
    FEATURE_FAMILY,
    FEATURE_NAMES,
    FEATURE_TEXT,
    HOST_SCALARS,
    UNITS,
    WINDOW_FIELDS,
    base_name,
)


def test_every_feature_name_has_a_phrase_and_a_family() -> None:
    for name in FEATURE_NAMES:
        base = base_name(name)
        assert base in FEATURE_TEXT, f"{base} has no FEATURE_TEXT entry"
        assert base in FEATURE_FAMILY, f"{base} has no FEATURE_FAMILY entry"
    assert set(FEATURE_TEXT) == set(FEATURE_FAMILY) == {*HOST_SCALARS, *WINDOW_FIELDS}


def test_phrases_take_one_value_and_name_a_known_unit() -> None:
    for name, (phrase, unit) in FEATURE_TEXT.items():
        assert phrase.count("{v}") == 1 and phrase.format(v=3) != phrase, name
        assert unit in UNITS, f"{name}: unit {unit!r}"
    assert FEATURE_TEXT["ext_dst_ips"][0].format(v=41) == "sent to 41 distinct external MX hosts"


def test_families_name_alert_kinds_and_every_feature_family_exists() -> None:
    kinds = {k.value for k in AlertKind}
    for family, members in FAMILIES.items():
        assert family and members and set(members) <= kinds, family
    assert set(FEATURE_FAMILY.values()) <= {"", *FAMILIES}
    every = [k for members in FAMILIES.values() for k in members]
    assert len(every) == len(set(every))  # a kind belongs to one family


def test_base_name_strips_only_a_window_prefix() -> None:
    assert base_name("medium_msgs") == "msgs" and base_name("long_offhours_share") == (
        "offhours_share")
    assert base_name("in_home_net") == "in_home_net"
    assert base_name("msgs_after_auth_success") == "msgs_after_auth_success"
    assert [base_name(n) for n in FEATURE_NAMES[len(HOST_SCALARS):]] == list(WINDOW_FIELDS) * 3

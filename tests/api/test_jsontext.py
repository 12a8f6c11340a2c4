"""``_jsontext.dumps``: the package's task-list encoder gives what ``json.dumps`` gives."""

from __future__ import annotations

import enum
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tthsd_interface._jsontext import dumps

# Every code point, surrogates included: a save path decoded with surrogateescape holds
# them, and the encoder must pass them on exactly as json.dumps does.
TEXT = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF))
SCALARS = st.none() | st.booleans() | st.integers() | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@given(VALUES)
def test_the_same_text_as_json_dumps(value: object) -> None:
    assert dumps(value) == json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize(
    "text",
    ["", "plain", 'q"uote', "back\\slash", "\x00\x1f\x7f", "\b\f\n\r\t", "中文 ü", "\u2028",
     "\udcff", "tab\tin/a path.bin"],
)  # fmt: skip
def test_escapes_round_trip(text: str) -> None:
    encoded = dumps({"save_path": text, "n": [1, True, None]})
    assert encoded == json.dumps({"save_path": text, "n": [1, True, None]}, ensure_ascii=False)
    if "\udcff" not in text:  # a lone surrogate is not UTF-8: the core rejects the bytes
        assert json.loads(encoded.encode("utf-8")) == {"save_path": text, "n": [1, True, None]}


@pytest.mark.parametrize("value", [1.5, b"bytes", {1: "int key"}, object(), {"a": {2.0}}])
def test_what_it_cannot_encode_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError):
        dumps(value)


def test_an_int_subclass_is_written_as_its_value() -> None:
    class Weird(int):
        def __repr__(self) -> str:
            return "not a number"

    assert dumps([Weird(7)]) == "[7]"


def test_str_and_int_subclasses_are_written_as_their_values() -> None:
    class Mirror(str, enum.Enum):  # noqa: UP042 - its format() is "Mirror.MAIN", unlike StrEnum
        MAIN = "http://h/x"

    class Level(enum.IntEnum):
        HIGH = 3

    class Loud(str):
        def __str__(self) -> str:
            return "LOUD"

        def __format__(self, spec: str) -> str:
            return "LOUD"

    value = {Mirror.MAIN: [Mirror.MAIN, Level.HIGH, Loud('a"b')]}
    assert dumps(value) == json.dumps(value, ensure_ascii=False)
    assert dumps(value) == '{"http://h/x": ["http://h/x", 3, "a\\"b"]}'

"""Rates, sizes and durations as the command line and the displays read and write them."""

from __future__ import annotations

import pytest

from tthsd_interface._units import format_bytes, format_duration, format_rate, parse_rate


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("800", 800), ("0", 0), ("512k", 512 << 10), ("10M", 10 << 20), ("10m", 10 << 20),
        ("1.5G", 3 << 29), ("2MiB", 2 << 20), ("2MB/s", 2 << 20), (" 4 K ", 4 << 10),
        (".5M", 1 << 19), (4096, 4096),
    ],
)  # fmt: skip
def test_parse_rate(text: str | int, value: int) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize("text", ["", "fast", "-1", "10X", "1e6", "M"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def test_parse_rate_types() -> None:
    with pytest.raises(ValueError):
        parse_rate(-1)
    with pytest.raises(TypeError):
        parse_rate(True)


def test_formats() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 << 20) == "3.0 MiB"
    assert format_bytes(200 << 20) == "200 MiB"
    assert format_rate(10 << 20) == "10.0 MiB/s"
    assert format_duration(65) == "0:01:05"
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(None) == "-:--:--"
    assert format_duration(float("inf")) == "-:--:--"

"""JSON text for what the package sends the core (the task list, headers), without the
``json`` module.

``json`` imports ``re`` (and ``re`` imports ``enum``): ~5 ms of every program's start, paid
before the first request only to encode a list of small dicts of strings.  Decoding the
core's events needs the real parser; it imports ``json`` on the dispatcher thread, once a
download is running.  The output is what ``json.dumps(value, ensure_ascii=False)`` gives
(the tests compare the two).
"""

from __future__ import annotations

__all__ = ["dumps"]

# RFC 8259 section 7: a string escapes the quotation mark, the reverse solidus and the
# control characters U+0000 to U+001F; everything else may appear as itself.
_ESCAPES: dict[int, str] = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update({
    ord('"'): '\\"', ord("\\"): "\\\\", ord("\b"): "\\b", ord("\f"): "\\f",
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
})  # fmt: skip


def _string(text: str) -> str:
    # A str subclass (a StrEnum member...) is written as its value, as json does, whatever
    # its __str__ or __format__ say.
    text = str.__str__(text)
    # Most strings (URLs, paths) need no escape: three scans in C instead of a translate.
    if text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    return '"' + text.translate(_ESCAPES) + '"'


def dumps(value: object) -> str:
    """``value`` (str, int, bool, None, and lists, tuples and str-keyed dicts of them) as
    JSON text; ``TypeError`` for anything else."""
    if isinstance(value, str):
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)  # a subclass's __repr__ could print anything
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            items.append(f"{_string(key)}: {dumps(item)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join([dumps(item) for item in value]) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON here")

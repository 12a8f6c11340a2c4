"""The ``tasks_json`` array of ABI.md section 2, built from the Python API's lists and
checked before the core sees it: lists of matching lengths, strings where strings
belong, and the optional keys of our core (``name_from_server``, ``overwrite``,
``max_connections_per_host``, ``mirrors``) only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["build_tasks", "host_cap", "mirror_lists"]


def _str_list(
    name: str, values: Sequence[str | None] | None, count: int
) -> list[str | None] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings, not a single string")
    items: list[str | None] = list(values)
    if len(items) != count:
        raise ValueError(f"{name} has {len(items)} entries but urls has {count}")
    for item in items:
        if item is not None and not isinstance(item, str):
            raise TypeError(f"{name} must hold strings, found {type(item).__name__}")
    return items


def build_tasks(
    urls: Sequence[str],
    save_paths: Sequence[str | os.PathLike[str]],
    *,
    show_names: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    checksums: Sequence[str | None] | None = None,
    name_from_server: bool = False,
    overwrite: bool = False,
    max_connections_per_host: int | None = None,
    mirrors: Sequence[Sequence[str] | None] | None = None,
) -> list[dict[str, str | bool | int | list[str]]]:
    """The ``tasks_json`` array of ABI.md section 2, validated.

    ``name_from_server`` and ``overwrite`` set the optional keys of the same names on
    every task (our core: the file is named by the server's ``Content-Disposition``, see
    docs/python-api.md); ``max_connections_per_host`` (1 to 4096) goes into every task;
    ``mirrors``: per task, other URLs of the same file, or None (the key ``mirrors``).
    Raises ``ValueError`` when the lists differ in length and ``TypeError`` for a bare
    string where a list is expected.
    """
    if isinstance(urls, (str, bytes)):
        raise TypeError("urls must be a list of URLs, not a single string")
    if isinstance(save_paths, (str, bytes, os.PathLike)):
        raise TypeError("save_paths must be a list of paths, not a single path")
    url_list = list(urls)
    path_list = [os.fspath(p) for p in save_paths]
    if len(url_list) != len(path_list):
        raise ValueError(
            f"urls and save_paths must have the same length ({len(url_list)} != {len(path_list)})"
        )
    for url in url_list:
        if not isinstance(url, str):
            raise TypeError(f"urls must hold strings, found {type(url).__name__}")
    for path in path_list:
        if not isinstance(path, str):
            raise TypeError("save_paths must hold str or os.PathLike[str]")
    names = _str_list("show_names", show_names, len(url_list))
    task_ids = _str_list("ids", ids, len(url_list))
    sums = _str_list("checksums", checksums, len(url_list))
    per_host = host_cap(max_connections_per_host)
    others = mirror_lists(mirrors, len(url_list))
    tasks: list[dict[str, str | bool | int | list[str]]] = []
    for i, (url, path) in enumerate(zip(url_list, path_list)):
        task: dict[str, str | bool | int | list[str]] = {"url": url, "save_path": path}
        if names is not None and names[i] is not None:
            task["show_name"] = str(names[i])
        if task_ids is not None and task_ids[i] is not None:
            task["id"] = str(task_ids[i])
        if sums is not None and sums[i] is not None:
            task["checksum"] = str(sums[i])
        if name_from_server:
            task["name_from_server"] = True
            if overwrite:
                task["overwrite"] = True
        if per_host is not None:
            task["max_connections_per_host"] = per_host
        if others is not None and others[i]:
            task["mirrors"] = list(others[i])
        tasks.append(task)
    return tasks


def mirror_lists(
    mirrors: Sequence[Sequence[str] | None] | None, count: int
) -> list[tuple[str, ...]] | None:
    """``mirrors`` checked: None, or one entry per URL, each None or a list of URLs
    (the core checks the URLs themselves and refuses more than 16 per task)."""
    if mirrors is None:
        return None
    if isinstance(mirrors, (str, bytes)):
        raise TypeError("mirrors must hold one list of URLs per task, not a single string")
    entries = list(mirrors)
    if len(entries) != count:
        raise ValueError(f"mirrors has {len(entries)} entries but urls has {count}")
    out: list[tuple[str, ...]] = []
    for entry in entries:
        if entry is None:
            out.append(())
            continue
        if isinstance(entry, (str, bytes)):
            raise TypeError("each entry of mirrors must be a list of URLs (or None), not a string")
        urls = tuple(entry)
        for u in urls:
            if not isinstance(u, str):
                raise TypeError(f"mirrors must hold strings, found {type(u).__name__}")
        out.append(urls)
    return out


def host_cap(value: int | None) -> int | None:
    """``max_connections_per_host`` checked: None, or an int from 1 to 4096."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_connections_per_host must be an int, got {type(value).__name__}")
    if not 1 <= value <= 4096:
        raise ValueError(f"max_connections_per_host must be from 1 to 4096, got {value}")
    return value

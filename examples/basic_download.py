"""Example 4.1 of the TTHSD documentation ("basic use, start at once"), runnable offline.

    python examples/basic_download.py

The URLs point at a loopback server serving generated files instead of example.com;
the rest is the documentation's code. The ``with`` block waits for the download to end.
"""

from __future__ import annotations

from typing import Any

from _server import example_server

from TTHSD_interface import TTHSDownloader


def on_progress(event: dict[str, Any], msg: dict[str, Any]) -> None:
    if event["Type"] == "update":
        total = msg.get("Total", 0)
        downloaded = msg.get("Downloaded", 0)
        task_id = event.get("ID", "")  # ID 从 event 获取
        if total:
            print(f"进度 [{task_id}]: {downloaded / total:.1%}")
    elif event["Type"] == "startOne":
        url = msg.get("URL", "")
        task_id = event.get("ID", "")  # ID 从 event 获取
        index = msg.get("Index", 0)
        total = msg.get("Total", 0)
        print(f"开始下载 [{index}/{total}]: {url} (ID: {task_id})")
    elif event["Type"] == "endOne":
        url = msg.get("URL", "")
        task_id = event.get("ID", "")  # ID 从 event 获取
        print(f"下载完成: {url} (ID: {task_id})")
    elif event["Type"] == "err":
        print("错误:", msg.get("Error"))


with example_server("file1.zip", "file2.zip") as urls, TTHSDownloader() as dl:
    dl_id = dl.start_download(
        urls=urls,  # ["https://example.com/file1.zip", "https://example.com/file2.zip"]
        save_paths=["./downloads/file1.zip", "./downloads/file2.zip"],
        thread_count=32,
        callback=on_progress,
    )
    # 程序退出 with 块时自动 close()
print("saved ./downloads/file1.zip and ./downloads/file2.zip")

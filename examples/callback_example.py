"""The callback example of the TTHSD documentation, typed, on a real (offline) download.

python examples/callback_example.py
"""

from __future__ import annotations

from _server import example_server

from TTHSD_interface import Event, TTHSDownloader


def callback_func(event_dict: Event, msg_dict: dict[str, str | int | float]) -> None:
    event_type = event_dict.get("Type", "")
    event_showname = event_dict.get("ShowName", "")
    event_id = event_dict.get("ID", "")

    match event_type:
        case "update":
            total = int(msg_dict.get("Total", 0))
            downloaded = int(msg_dict.get("Downloaded", 0))
            if total > 0:
                percent = (downloaded / total) * 100
                print(
                    f"{event_showname}（{event_id}）：{downloaded}/{total} 字节 ({percent:.2f}%)",
                    end="\r",
                    flush=True,
                )
        case "startOne":
            url = msg_dict.get("URL", "")
            index = msg_dict.get("Index", 0)
            total_tasks = msg_dict.get("Total", 0)
            print(
                f"\n{event_showname}（{event_id}）：开始下载：{url}，"
                f"这是第 {index} 个下载任务，总共 {total_tasks} 个任务。"
            )
        case "start":
            print(f"\n{event_showname}（{event_id}）：开始下载")
        case "endOne":
            url = msg_dict.get("URL", "")
            index = msg_dict.get("Index", 0)
            total_tasks = msg_dict.get("Total", 0)
            print(
                f"\n{event_showname}（{event_id}）：下载完成：{url}，"
                f"这是第 {index} 个下载任务，总共 {total_tasks} 个任务。"
            )
        case "end":
            print(f"\n{event_showname}（{event_id}）：下载完成或已被取消")
        case "msg":
            print(f"\n{event_showname}（{event_id}）：{msg_dict.get('Text', '')}")
        case "err":
            print(f"\n{event_showname}（{event_id}）：错误: {msg_dict.get('Error', '')}")
        # (The documentation's ``case _: pass`` is left out: with ``Event`` typed, mypy
        # knows these are all the event types.)


with example_server("a.bin", "b.bin") as urls, TTHSDownloader() as dl:
    dl.start_download(urls, ["./downloads/a.bin", "./downloads/b.bin"], callback=callback_func)

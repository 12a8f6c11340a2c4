"""Example 4.2 of the TTHSD documentation ("create, then start by hand, in parallel").

    python examples/manual_start.py

Then pause, resume and wait, as the documentation's "后续可暂停、恢复等" suggests.
"""

from __future__ import annotations

import time

from _server import example_server

from TTHSD_interface import TTHSDownloader

with example_server("bigfile.iso", size=64 << 20) as urls:
    dl = TTHSDownloader()
    dl_id = dl.get_downloader(
        urls=urls,  # ["https://example.com/bigfile.iso"]
        save_paths=["./downloads/bigfile.iso"],
        thread_count=64,
    )
    dl.start_multiple_downloads_by_id(dl_id)
    dl.set_speed_limit(dl_id, 16 << 20)  # 16 MiB/s, so there is time to pause
    time.sleep(0.5)
    print("paused:", dl.pause_download(dl_id), dl.get_performance_stats(dl_id).get("state"))
    time.sleep(0.5)
    print("resumed:", dl.resume_download(dl_id))
    dl.set_speed_limit(dl_id, 0)
    print("ended:", dl.wait(dl_id, timeout=120))
    stats = dl.get_performance_stats(dl_id)
    print(f"{stats.get('downloaded')} bytes, average {stats.get('average_speed', 0):.0f} B/s")
    dl.close()

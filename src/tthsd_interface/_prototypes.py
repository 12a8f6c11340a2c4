"""The C prototypes of ``native/include/tthsd.h`` as ctypes declarations: the only table of
them.  ``_ffi`` loads the library with it, and the ABI tests (``tests/abi/lib.py``) call
the raw exports through it; ``tests/api/test_contract.py`` parses the header and fails
when an export is missing here, is declared here but not in the header, or has another
``restype``/``argtypes``.

How C types map (one ctypes type per C type):

* ``const char *`` is ``c_char_p`` (a string the caller owns, or a static one);
* ``char *`` is ``c_void_p``: a buffer the library writes into, or a string it returns
  that must go back to ``free_string`` (a ``c_char_p`` result would be copied into bytes,
  losing the pointer);
* ``const bool *`` is ``POINTER(c_bool)``, NULL meaning "not given";
* ``tthsd_callback`` is :class:`CallbackArg`: a :data:`CALLBACK` or None for NULL.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_bool, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Final

__all__ = ["BOOL_P", "CALLBACK", "PROTOTYPES", "CallbackArg"]

CALLBACK: Final = ctypes.CFUNCTYPE(None, c_char_p, c_char_p)
"""``typedef void (*tthsd_callback)(const char *event_json, const char *msg_json);``"""

BOOL_P: Final = POINTER(c_bool)
"""``const bool *``"""


class CallbackArg:
    """The argument type of a ``tthsd_callback`` parameter: a :data:`CALLBACK` instance, or
    None for NULL (a bare CFUNCTYPE argtype refuses None)."""

    @classmethod
    def from_param(cls, obj: object) -> Any:
        if obj is None:
            return c_void_p(None)
        if not isinstance(obj, CALLBACK):
            raise TypeError(f"expected a tthsd_callback or None, got {type(obj).__name__}")
        return obj


# What every creating export takes up to ``use_socket``: const char *tasks_json,
# int task_count, int thread_count, int chunk_size_mb, tthsd_callback callback,
# bool use_callback_url, const char *user_agent, const char *remote_callback_url,
# const bool *use_socket.
_CREATE: Final = (c_char_p, c_int, c_int, c_int, CallbackArg, c_bool, c_char_p, c_char_p, BOOL_P)

PROTOTYPES: Final[dict[str, tuple[Any, tuple[Any, ...]]]] = {
    # Export name: (restype, argtypes), in the header's order, each under its C prototype.
    # int startDownload(<start_download's arguments without headers_json>);
    "startDownload": (c_int, (*_CREATE, BOOL_P)),
    # int getDownloader(<get_downloader's arguments without headers_json>);
    "getDownloader": (c_int, _CREATE),
    # int startDownload_ID(int id);
    "startDownload_ID": (c_int, (c_int,)),
    # int startMultipleDownloads_ID(int id);
    "startMultipleDownloads_ID": (c_int, (c_int,)),
    # int pauseDownload(int id);
    "pauseDownload": (c_int, (c_int,)),
    # int resumeDownload(int id);
    "resumeDownload": (c_int, (c_int,)),
    # int stopDownload(int id);
    "stopDownload": (c_int, (c_int,)),
    # int start_download(const char *tasks_json, int task_count, int thread_count,
    #                    int chunk_size_mb, tthsd_callback callback, bool use_callback_url,
    #                    const char *user_agent, const char *remote_callback_url,
    #                    const bool *use_socket, const bool *is_multiple,
    #                    const char *headers_json);
    "start_download": (c_int, (*_CREATE, BOOL_P, c_char_p)),
    # int get_downloader(<start_download's arguments without is_multiple>);
    "get_downloader": (c_int, (*_CREATE, c_char_p)),
    # int start_download_id(int id);
    "start_download_id": (c_int, (c_int,)),
    # int start_multiple_downloads_id(int id);
    "start_multiple_downloads_id": (c_int, (c_int,)),
    # int pause_download(int id);
    "pause_download": (c_int, (c_int,)),
    # int resume_download(int id);
    "resume_download": (c_int, (c_int,)),
    # int stop_download(int id);
    "stop_download": (c_int, (c_int,)),
    # int set_speed_limit(int id, uint64_t bytes_per_second);
    "set_speed_limit": (c_int, (c_int, c_uint64)),
    # int set_proxy(int id, const char *proxy_url);
    "set_proxy": (c_int, (c_int, c_char_p)),
    # int set_retry_config(int id, uint32_t max_retries, uint64_t retry_delay_ms,
    #                      uint64_t max_retry_delay_ms);
    "set_retry_config": (c_int, (c_int, c_uint32, c_uint64, c_uint64)),
    # char *get_performance_stats(int id);   (released with free_string)
    "get_performance_stats": (c_void_p, (c_int,)),
    # void free_string(char *s);
    "free_string": (None, (c_void_p,)),
    # const char *tthsd_version(void);   (static, never freed)
    "tthsd_version": (c_char_p, ()),
    # int tthsd_abi_version(void);
    "tthsd_abi_version": (c_int, ()),
    # int tthsd_last_error(char *buf, size_t len);
    "tthsd_last_error": (c_int, (c_void_p, c_size_t)),
    # int tthsd_set_timeouts(int id, uint64_t connect_timeout_ms, uint64_t read_timeout_ms);
    "tthsd_set_timeouts": (c_int, (c_int, c_uint64, c_uint64)),
    # int tthsd_set_durability(int id, bool durable);
    "tthsd_set_durability": (c_int, (c_int, c_bool)),
    # int tthsd_queue_new(void);
    "tthsd_queue_new": (c_int, ()),
    # int tthsd_get_downloader_queued(int queue, const char *tasks_json, int task_count,
    #                                 int thread_count, int chunk_size_mb,
    #                                 bool use_callback_url, const char *user_agent,
    #                                 const char *remote_callback_url,
    #                                 const bool *use_socket, const char *headers_json);
    "tthsd_get_downloader_queued": (
        c_int,
        (c_int, c_char_p, c_int, c_int, c_int, c_bool, c_char_p, c_char_p, BOOL_P, c_char_p),
    ),
    # int tthsd_queue_poll(int queue, char *buf, size_t len, int timeout_ms);
    "tthsd_queue_poll": (c_int, (c_int, c_void_p, c_size_t, c_int)),
    # int tthsd_queue_close(int queue);
    "tthsd_queue_close": (c_int, (c_int,)),
}

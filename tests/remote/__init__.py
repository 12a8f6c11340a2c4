"""Tests of the remote event sinks (ABI.md §6) and of proxies, against the real core."""

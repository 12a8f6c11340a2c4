"""Tests of the raw C ABI of the TTHighSpeedDownloader library, through ctypes."""

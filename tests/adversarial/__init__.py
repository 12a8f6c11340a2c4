"""Adversarial tests: the real core against servers, disks and paths that attack it."""

"""The test suite. A package so that ``tests.support`` is importable (see its docstring)."""

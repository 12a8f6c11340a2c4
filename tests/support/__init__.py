"""Shared test support: self-describing content and a loopback HTTP server that misbehaves
on demand. Used by every test directory (``tests/abi``, ``tests/api``, ...).

How to import: the canonical name is ``tests.support``::

    from tests.support.content import Content, sha256_file, first_mismatch
    from tests.support.server import LoopbackServer, fail_times, close_after, stall
    from tests.support.h2server import H2Server   # the same resources over HTTP/2 + TLS

``tests/`` is a package and ``tests/conftest.py`` lives in it, so pytest puts the
repository root on ``sys.path`` for any run from the root (``pytest``, ``pytest tests/``,
``pytest tests/abi``). ``tests/conftest.py`` also registers the same modules under the
short alias ``support`` (``from support.server import LoopbackServer`` works and yields the
*same* module objects, never a second copy with distinct classes).

Fixtures (defined in ``tests.support.fixtures``, available to every test under tests/):

``http_server``
    A started :class:`~tests.support.server.LoopbackServer` for one test, stopped after
    it. Register what it serves with ``http_server.add(path, ...)``::

        def test_something(http_server, tmp_path):
            res = http_server.add("/a.bin", size=3 << 20)           # Content, salt "/a.bin"
            http_server.add("/norange.bin", size=1000, ranges=False)
            http_server.add("/missing", status=404)
            http_server.add("/flaky.bin", size=1 << 20, hook=fail_times(2, 503))
            ... download res.url to tmp_path / "a.bin" ...
            assert sha256_file(tmp_path / "a.bin") == res.sha256()
            assert http_server.bytes_sent("/a.bin") <= res.size * 1.1

    The test fails at teardown if a hook raised (``http_server.errors``).

``http_server_factory``
    ``http_server_factory(**LoopbackServer kwargs)`` starts another server (a second
    origin, an HTTPS one...); all are stopped after the test.

Modules: :mod:`.content` (what files contain and how they are checked), :mod:`.server`
(the server, its resources, knobs, request records and ready-made fault hooks),
:mod:`.fixtures` (the pytest fixtures above).
"""

"""Joining a Ray cluster: a wrong --address fails fast, with one error naming the fix.

Kept apart from test_ray_jobs.py, whose module-wide local Ray would already be joined."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from befa_viz.cli import app


def test_joining_a_closed_port_fails_fast_with_the_fix(tmp_path):
    import socket
    import time

    pytest.importorskip("ray")
    from befa_viz.distributed import RayEngine
    from befa_viz.errors import ConfigError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.perf_counter()
    for addr in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConfigError, match=rf"{addr}.*nothing listens.*ray start --head"):
            RayEngine(address=addr, connect_timeout=5).init()
    assert time.perf_counter() - t0 < 5
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        RayEngine(address="head-without-port").init()
    with pytest.raises(ConfigError, match="connect_timeout"):
        RayEngine(connect_timeout=0)
    for cmd in (["encode", "--connect-timeout", "3"], ["benchmark", "--workers", "2"]):
        r = CliRunner().invoke(app, [*cmd, "-w", str(tmp_path)])
        assert r.exit_code == 2 and "--engine ray" in r.output


def test_joining_a_silent_host_is_bounded_by_the_timeout(monkeypatch):
    import socket

    pytest.importorskip("ray")
    from befa_viz.distributed import RayEngine
    from befa_viz.errors import ConfigError

    seen = {}

    def silent(address, timeout):  # a firewalled head: the TCP handshake never completes
        seen["timeout"] = timeout
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    with pytest.raises(ConfigError, match=r"no answer from head:6379 within 2 s"):
        RayEngine(address="head:6379", connect_timeout=2).init()
    assert seen["timeout"] == 2


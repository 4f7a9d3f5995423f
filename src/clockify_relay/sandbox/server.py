"""Run the sandbox app over real HTTP: in a background thread (tests, benchmarks) or in the
foreground (``clockify-relay sandbox --port``)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from clockify_relay.sandbox.app import build_app
from clockify_relay.sandbox.core import Sandbox, SandboxConfig

_START_TIMEOUT = 10.0


class SandboxServer:
    """The sandbox on uvicorn in a daemon thread, bound to ``host`` and a free (or given) port.

    Use as a context manager::

        with SandboxServer() as sandbox:
            client.post(sandbox.base_urls["everit"] + "/worklog", ...)
            assert sandbox.state()["everit"]["worklogs"]

    ``state()``, ``reset()`` and ``inject_fault()`` act on the app in-process (thread-safe), so
    they need no HTTP round trip; the same operations are available over HTTP under
    ``/_sandbox``.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or SandboxConfig()
        self.app = build_app(self.config)
        self.sandbox: Sandbox = self.app.state.sandbox
        self._host = host
        self._port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind the socket, start uvicorn in a thread and wait until it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("sandbox server already started")
        # Binding here (not inside uvicorn) makes a free port known before the thread starts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(128)
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            # Requests held by a timeout fault must not keep the server from stopping.
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"sandbox-{self._port}",
            daemon=True,
        )
        self._thread.start()
        # The SMTP server of the mail target, on a free port of its own.
        self.config.smtp_port = self.sandbox.smtp.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError("sandbox server thread exited during startup")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sandbox server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop uvicorn and wait for its thread; safe to call twice."""
        self.sandbox.closing.set()
        self.sandbox.smtp.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._close_socket()
        self._server = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (0 until started when no port was given)."""
        return self._port

    @property
    def url(self) -> str:
        """Root URL of the sandbox, e.g. ``http://127.0.0.1:53211`` (no trailing slash)."""
        return f"http://{self._host}:{self._port}"

    @property
    def smtp_url(self) -> str:
        """SMTP_URL of the sandbox's SMTP server (plain, no login)."""
        return f"smtp://127.0.0.1:{self.sandbox.smtp.port}?starttls=false"

    @property
    def base_urls(self) -> dict[str, str]:
        """The base URL a connector should use for each mounted target."""
        return {
            name: f"{self.url}/{name}{fake.base_path}" for name, fake in self.sandbox.fakes.items()
        }

    # -- control ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What ``GET /_sandbox/state`` answers."""
        return self.sandbox.state()

    def reset(self) -> None:
        """Clear records, faults and counters (``POST /_sandbox/reset``)."""
        self.sandbox.reset()

    def inject_fault(
        self,
        target: str,
        *,
        status: int | None = None,
        count: int | None = None,
        seconds: float | None = None,
        latency: float | None = None,
        timeout: bool | float = False,
        body: Any = None,
        retry_after: float | str | None = None,
        path: str | None = None,
        method: str | None = None,
    ) -> int:
        """Inject a fault for ``target`` as ``POST /_sandbox/faults`` would; returns its id.

        ``path`` (under the target's base URL; that path and below) and ``method`` limit it to
        matching requests. Raises :class:`~clockify_relay.sandbox.core.FaultError` on an invalid
        specification.
        """
        spec: dict[str, Any] = {"target": target, "timeout": timeout}
        for key, value in (
            ("status", status),
            ("count", count),
            ("seconds", seconds),
            ("latency", latency),
            ("body", body),
            ("retry_after", retry_after),
            ("path", path),
            ("method", method),
        ):
            if value is not None:
                spec[key] = value
        return self.sandbox.add_fault(spec).id


def serve(host: str = "127.0.0.1", port: int = 8765, config: SandboxConfig | None = None) -> None:
    """Run the sandbox in the foreground until interrupted (``clockify-relay sandbox``), with its
    SMTP server on a free port."""
    config = config or SandboxConfig()
    app = build_app(config)
    sink = app.state.sandbox.smtp
    config.smtp_port = sink.start()
    print(f"sandbox SMTP server on smtp://127.0.0.1:{config.smtp_port}?starttls=false", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
    finally:
        sink.stop()

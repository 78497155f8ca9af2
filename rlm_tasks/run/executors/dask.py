"""The Dask executor: each attempt is one Dask task on a distributed cluster; everything else stays in the runner.

Shared filesystem mode: the repository sits at the same path on every Dask
worker (NFS, a Kubernetes volume). Before the first attempt the runner asks
every worker which commit and which rlm.yaml it sees there and refuses to
submit when one differs. The remote task runs worker.run (argv without a
shell, prompt on stdin, own process group, log on the shared path) with no
timeout of its own: this process keeps the timeout, stall detection (it
watches the same shared files) and shutdown, and ends a remote attempt by
setting its Dask Event, which the remote task checks every poll before it
ends the process group. Dask's own retries are off; when a Dask worker dies
and the scheduler runs the task again, the task sees its attempt already
started and refuses, so an attempt never runs twice (the runner's retries
decide). Workers started with `--resources agents=N` run at most N agents
each: every attempt then asks for one `agents`. worker.run ends an attempt's
descendants there as it does here: the Dask worker process is the child
subreaper while attempts run in it (run/orphans.py).
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlm_tasks import gitcmd, procs
from rlm_tasks.procs import start_ticks
from rlm_tasks.render.agents import Invocation
from rlm_tasks.run import worker
from rlm_tasks.run.executors.base import ClusterError, OnStart
from rlm_tasks.run.isolation import remote
from rlm_tasks.state.context import RunContext
from rlm_tasks.state.provenance import sha256_file


def distributed() -> Any:
    """Dask distributed, imported when a run uses it (the `dask` extra; a no-op run never pays for it).

    Untyped: one Any here instead of a mypy exception per call. ImportError without the extra.
    """
    return importlib.import_module("distributed")

CONNECT_TIMEOUT = 10.0
LOST_AFTER = 10.0  # seconds past the kill grace after which a cancelled remote attempt counts as lost
AGENTS = "agents"


def git_commit(root: str) -> str | None:
    return gitcmd.head(root)


def probe(root: str, config: str) -> dict[str, Any]:
    """What one machine sees of the repository at `root` (runs on each Dask worker, and here)."""
    return {"host": socket.gethostname(), "commit": git_commit(root), "config_sha256": sha256_file(Path(config))}


def mismatches(root: str, expected: dict[str, Any], seen: dict[str, dict[str, Any]]) -> str | None:
    """One line naming each worker that sees another repository than this machine, or None."""
    bad = []
    for address, found in sorted(seen.items()):
        where = f"{address} ({found.get('host')})"
        if found.get("config_sha256") is None:
            bad.append(f"{where} has no {Path(expected['config']).name}")
        elif found.get("commit") != expected["commit"]:
            bad.append(f"{where} is at commit {found.get('commit') or 'none'}, not {expected['commit'] or 'none'}")
        elif found.get("config_sha256") != expected["config_sha256"]:
            bad.append(f"{where} sees another {Path(expected['config']).name}")
    if not bad:
        return None
    return (f"executor: every Dask worker must see this repository at {root} (a shared filesystem): "
            + "; ".join(bad))


def _where(name: str, client: Any = None) -> Any:
    """Host, pid and Dask worker of a remote attempt, set once its process started."""
    return distributed().Variable(f"{name}:where", client=client)


def _started(name: str, client: Any = None) -> Any:
    return distributed().Event(f"{name}:started", client=client)


def _ended(name: str, client: Any = None) -> Any:
    return distributed().Event(f"{name}:ended", client=client)


def remote_attempt(invocation: Invocation, prompt: bytes, log_path: str, cwd: str, report_path: str,
                   events_path: str | None, name: str) -> tuple[worker.AttemptResult, dict[str, Any]]:
    """On a Dask worker: one attempt, ended when the orchestrator sets the Event `name`."""
    started, cancel = _started(name), distributed().Event(name)
    now = time.time()
    if started.is_set():  # Dask ran this task again after its worker died: never repeat an attempt
        return worker.AttemptResult(None, False, now, now, error="the Dask worker running this attempt was lost"), {}
    where: dict[str, Any] = {"executor": "dask", "host": socket.gethostname(), "cancel": name,
                             "dask_worker": distributed().get_worker().address}

    def on_start(pid: int, at: float) -> None:
        where.update(pid=pid, pgid=pid, pid_start_ticks=start_ticks(pid))
        _where(name).set(where)
        started.set()

    try:
        result = worker.run(invocation, prompt, Path(log_path), Path(cwd), Path(report_path), on_start=on_start,
                            events_path=None if events_path is None else Path(events_path), cancel=cancel.is_set)
    finally:
        _ended(name).set()
    return result, where


def remote_isolated_attempt(request: remote.Request, invocation: Invocation, prompt: bytes, run_id: str,
                            stall_after: float | None,
                            name: str) -> tuple[worker.AttemptResult, dict[str, Any], remote.Returned]:
    """On a Dask worker without the runner's filesystem: one isolated attempt in a worktree of its own folder."""
    started, cancel = _started(name), distributed().Event(name)
    now = time.time()
    if started.is_set():  # Dask ran this task again after its worker died: never repeat an attempt
        lost = worker.AttemptResult(None, False, now, now, error="the Dask worker running this attempt was lost")
        return lost, {}, remote.Returned(None, b"", b"", None, None)
    dask_worker = distributed().get_worker()
    where: dict[str, Any] = {"executor": "dask", "host": socket.gethostname(), "cancel": name,
                             "dask_worker": dask_worker.address}

    def on_start(pid: int, at: float) -> None:
        where.update(pid=pid, pgid=pid, pid_start_ticks=start_ticks(pid))
        _where(name).set(where)
        started.set()

    folder = Path(dask_worker.local_directory) / "rlm" / run_id
    try:
        result, returned = remote.run(request, invocation, prompt, folder, name.rsplit("-", 1)[-1],
                                      stall_after=stall_after, cancel=cancel.is_set, on_start=on_start)
    finally:
        _ended(name).set()
    return result, where, returned


def end_lost(pgid: int, ticks: int | None, grace: float) -> bool:
    """On the host where a lost attempt ran: end its process group if it still runs; True once it is gone.
    A leader alive with another start time is a reused pid, not the attempt's."""
    if ticks is not None and start_ticks(pgid) not in (None, ticks):
        return True
    if procs.group_alive(pgid):
        worker.end_group(pgid, grace)
    deadline = time.monotonic() + grace + LOST_AFTER
    while procs.group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not procs.group_alive(pgid)


def _host_of(address: str) -> str:
    return address.rsplit("://", 1)[-1].rsplit(":", 1)[0]


class DaskExecutor:
    """Submits attempts to the scheduler at `scheduler`; one client per run and process."""

    def __init__(self, ctx: RunContext, scheduler: str) -> None:
        self.ctx = ctx
        self.scheduler = scheduler
        self._lock = threading.Lock()
        self._client: Any = None
        self._error: str | None = None
        self.resources: dict[str, float] | None = None
        self._active: set[str] = set()  # attempts submitted and not yet followed to their end
        self.shared = ctx.plan.executor.filesystem != "none"
        self._bundles: dict[str, bytes] = {}  # base commit → its bundle (tasks started together share a base)

    def connect(self) -> Any:
        """The client, after checking that every worker sees this repository; the same error for every attempt."""
        with self._lock:
            if self._error is not None:
                raise ClusterError(self._error)
            if self._client is None:
                try:
                    self._client = self._check(self._open())
                except ClusterError as exc:
                    self._error = str(exc)
                    raise
            return self._client

    def _open(self) -> Any:
        try:
            return distributed().Client(self.scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"executor: cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None

    def _check(self, client: Any) -> Any:
        root, config = str(self.ctx.plan.root), str(self.ctx.plan.config_path)
        try:
            seen = client.run(probe, root, config)
            problem = None if seen else f"executor: the Dask scheduler at {self.scheduler} has no workers"
            if self.shared:  # without a shared filesystem, isolated attempts bring their tree in a bundle
                problem = problem or mismatches(root, {**probe(root, config), "config": config}, seen)
            if problem is not None:
                raise ClusterError(problem)
            workers = client.scheduler_info(n_workers=-1).get("workers", {})
        except BaseException:
            client.close()
            raise
        if any(AGENTS in (info.get("resources") or {}) for info in workers.values()):
            self.resources = {AGENTS: 1}
        return client

    def run(self, invocation: Invocation, prompt: bytes, log_path: Path, cwd: Path, report_path: Path, *,
            stall_after: float | None, watch: Sequence[Path], on_start: OnStart,
            events_path: Path | None = None) -> worker.AttemptResult:
        client = self.connect()
        submitted = time.time()
        if worker.shutting_down():
            return worker.AttemptResult(None, False, submitted, submitted, error="interrupted", interrupted=True)
        name = f"rlm-{self.ctx.plan.run_id}-{uuid.uuid4().hex}"
        future = client.submit(remote_attempt, invocation._replace(timeout=None), prompt, str(log_path),
                               str(cwd), str(report_path), None if events_path is None else str(events_path), name,
                               key=name, pure=False, retries=0,
                               resources=self.resources)
        with self._lock:
            self._active.add(name)
        try:
            watched = [log_path, report_path, *watch, *([events_path] if events_path is not None else [])]
            return self._follow(client, future, name, invocation.timeout, stall_after, watched, on_start, submitted)
        finally:
            with self._lock:
                self._active.discard(name)
            future.release()
            with contextlib.suppress(Exception):  # the scheduler keeps named Events and Variables until told
                _where(name, client).delete()
                for event in (_started(name, client), _ended(name, client), distributed().Event(name, client=client)):
                    event.clear()

    def run_isolated(self, request: remote.Request, invocation: Invocation, prompt: bytes, *,
                     stall_after: float | None, on_start: OnStart) -> tuple[worker.AttemptResult, remote.Returned]:
        """An isolated attempt on a Dask worker that does not share this machine's files: its tree travels as
        a git bundle, its report and change come back. The remote side keeps the timeout and stall detection
        (this process cannot see its files); a shutdown here still ends it through its Event."""
        client = self.connect()
        submitted = time.time()
        nothing = remote.Returned(None, b"", b"", None, None)
        if worker.shutting_down():
            return worker.AttemptResult(None, False, submitted, submitted, error="interrupted",
                                        interrupted=True), nothing
        with self._lock:
            cached = self._bundles.get(request.base)
        if cached is None:
            cached = remote.bundle(self.ctx.plan.root, request.base)
            with self._lock:
                self._bundles = {request.base: cached}  # one at a time: bundles can be large
        request = request._replace(bundle=cached)
        name = f"rlm-{self.ctx.plan.run_id}-{uuid.uuid4().hex}"
        future = client.submit(remote_isolated_attempt, request, invocation, prompt, self.ctx.plan.run_id,
                               stall_after, name, key=name, pure=False, retries=0, resources=self.resources)
        with self._lock:
            self._active.add(name)
        kept: list[Any] = []
        try:
            result = self._follow(client, future, name, None, None, [], on_start, submitted, kept)
        finally:
            with self._lock:
                self._active.discard(name)
            future.release()
            with contextlib.suppress(Exception):
                _where(name, client).delete()
                for event in (_started(name, client), _ended(name, client), distributed().Event(name, client=client)):
                    event.clear()
        returned = kept[0][2] if kept and len(kept[0]) == 3 else nothing
        return result, returned

    def _follow(self, client: Any, future: Any, name: str, timeout: float | None,
                stall_after: float | None, watched: list[Path], on_start: OnStart,
                submitted: float, kept: list[Any] | None = None) -> worker.AttemptResult:
        """Wait for the remote attempt; end it (its Event) on a timeout, a stall or a shutdown of this run."""
        started_event = _started(name, client)
        started: float | None = None
        why: str | None = None
        asked = 0.0
        last_sig, last_change = worker.signature(watched), time.monotonic()
        while not future.done():
            if started is None:
                if started_event.wait(timeout=worker.POLL_SECONDS):
                    started = time.time()
                    where = dict(_where(name, client).get())
                    on_start(int(where["pid"]), started, {**where, "scheduler": self.scheduler})
            else:
                with contextlib.suppress(Exception):  # a timeout, or the task's own error (read below)
                    future.result(timeout=worker.POLL_SECONDS)
            if why is None:
                if worker.shutting_down():
                    why = "interrupted"
                elif started is not None and timeout is not None and time.time() - started >= timeout:
                    why = "timeout"
                elif started is not None and stall_after is not None:
                    sig = worker.signature(watched)
                    if sig != last_sig:
                        last_sig, last_change = sig, time.monotonic()
                    elif time.monotonic() - last_change >= stall_after:
                        why = "stalled"
                if why is not None:
                    distributed().Event(name, client=client).set()
                    asked = time.monotonic()
            elif time.monotonic() - asked > worker.kill_grace() + LOST_AFTER:
                future.cancel()
                return worker.AttemptResult(None, why == "timeout", started or submitted, time.time(),
                                            error=f"the Dask worker did not end the attempt ({why})",
                                            stalled=why == "stalled", interrupted=why == "interrupted")
        try:
            whole = future.result()
            result: worker.AttemptResult = whole[0]
            if kept is not None:
                kept.append(whole)
        except Exception as exc:  # the task failed on the cluster (worker lost, cancelled, ...): the attempt failed
            result = worker.AttemptResult(None, False, started or submitted, time.time(),
                                          error=f"Dask: {type(exc).__name__}: {exc}".rstrip(": "),
                                          interrupted=why == "interrupted")
            return self._after_loss(client, name, started, result)
        if result.error and started is not None:  # Dask ran it again after its worker died: "lost"
            return self._after_loss(client, name, started, result)
        if why is None:
            return result
        return result._replace(timed_out=why == "timeout", stalled=why == "stalled",
                                   interrupted=why == "interrupted")

    def _after_loss(self, client: Any, name: str, started: float | None,
                    result: worker.AttemptResult) -> worker.AttemptResult:
        """A lost attempt is retried only once its processes are known to be gone (never two agents writing one
        report): ended here when this host ran it, or by a live Dask worker on its host; when nobody can tell,
        the attempt counts as interrupted, which this run does not retry."""
        if started is None:
            return result  # it never started: nothing runs
        try:
            where = dict(_where(name, client).get(timeout=worker.POLL_SECONDS))
            pgid, ticks, host = int(where["pgid"]), where.get("pid_start_ticks"), _host_of(str(where["dask_worker"]))
        except Exception:  # the Variable is gone with the scheduler's memory of it: nobody can tell
            where, pgid, ticks, host = {}, 0, None, ""
        gone = False
        grace = worker.kill_grace_or_default()
        if pgid and where.get("host") == socket.gethostname():
            gone = end_lost(pgid, ticks, grace)
        elif pgid:
            with contextlib.suppress(Exception):
                workers = client.scheduler_info(n_workers=-1).get("workers", {})
                there = [address for address in workers if _host_of(address) == host]
                answers = client.run(end_lost, pgid, ticks, grace, workers=there[:1]) if there else {}
                gone = any(answers.values())
        if gone:
            return result
        return result._replace(interrupted=True, error=f"{result.error}; its processes on "
                               f"{where.get('host') or 'an unknown host'} may still run: not retried in this run")

    def close(self) -> None:
        """End what is still running (a run interrupted while waiting for the cluster), then disconnect."""
        with self._lock:
            client, self._client, active = self._client, None, sorted(self._active)
        if client is None:
            return
        with contextlib.suppress(Exception):  # the scheduler may be gone: nothing left to end then
            for name in active:
                distributed().Event(name, client=client).set()
            deadline = time.monotonic() + worker.kill_grace() + LOST_AFTER
            for name in active:
                _ended(name, client).wait(timeout=max(0.0, deadline - time.monotonic()))
        client.close()


def end_remote(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set the cancel Event of each remote attempt a dead orchestrator left, and wait until they ended."""
    reached = []
    for scheduler in sorted({str(e.get("scheduler")) for e in entries}):
        try:
            client = distributed().Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError):
            continue
        try:
            mine = [e for e in entries if str(e.get("scheduler")) == scheduler and isinstance(e.get("cancel"), str)]
            for entry in mine:
                if not _ended(entry["cancel"], client).is_set():
                    distributed().Event(entry["cancel"], client=client).set()
                    reached.append(entry)
            deadline = time.monotonic() + worker.kill_grace() + LOST_AFTER
            for entry in reached:
                _ended(entry["cancel"], client).wait(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            client.close()
    return reached

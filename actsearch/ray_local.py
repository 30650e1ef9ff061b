"""The embedded Ray a search starts when no cluster address is given: its own, loopback only, nothing
left behind.

It is always a new instance (`ray.init(address="local")`): a bare ray.init() joins a Ray that is already
running on the machine (found through /tmp/ray), e.g. another search's embedded one.  Two more things
Ray does not do by itself for a single-machine run:

* **Bind to loopback.**  Ray's servers (GCS, raylet, core workers, the agents) bind to the node's IP,
  which Ray resolves to the machine's external address even when asked for 127.0.0.1.  Ray's documented
  switch `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes it use the loopback address as the node IP (the
  single-machine mode Ray uses on macOS and Windows); it is set for the embedded Ray only, before Ray is
  imported, and inherited by the processes Ray starts.  When Ray was imported earlier in the process the
  module constant it read at import is set through one guarded, feature-detected access
  (`_single_machine_switch`); `start_embedded_ray` then checks that the node IP is loopback and warns
  when it is not.
* **End its helpers when the driver is killed.**  `ray.shutdown()` stops them on a normal exit, but after
  `kill -9` of the driver Ray's dashboard and runtime-env agents keep running, orphaned.  A small
  watchdog process (`python -m actsearch.ray_local --watch PID`, in its own session so a terminal's
  signals do not reach it) records the driver's descendants that are Ray's processes (process id and
  start time, from /proc) while the driver lives; when the driver is gone it stops the recorded processes that still run with
  the same start time (SIGTERM, then SIGKILL after 3 s).  Only processes the driver started are
  touched, by PID.  Linux only (/proc); elsewhere nothing is watched.

**Quietly.**  A new local Ray turns token authentication on by default (it sets RAY_AUTH_MODE=token
for the process and creates ~/.ray/auth_token when missing) and says so in a WARNING on every start
("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out ..."),
then logs "Started a local Ray instance." at INFO: two lines in every search's output about Ray's own
defaults.  `start_embedded_ray` keeps those defaults, token authentication included, and drops exactly
these announcements (`_QUIET`, logging filters on the two Ray loggers that emit them, installed for
the embedded ray.init() only and removed after it): every other Ray message, warnings and errors
included, still reaches the user, and no setting, environment variable or logger level is changed.
A cluster given by --address is joined by a plain ray.init(address=...) (actsearch.executor), which
none of this touches.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Optional

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
WATCH_INTERVAL_S = 0.5
TERM_GRACE_S = 3.0

# the announcements a new local Ray makes about its own defaults: (logger, level, message prefix).  Only
# these records are dropped, only during the embedded ray.init(); token authentication stays on.
_QUIET = (
    ("ray._private.authentication.authentication_token_setup", logging.WARNING,
     "Token authentication is enabled for this Ray cluster"),
    ("ray._private.authentication.authentication_token_setup", logging.INFO,
     "Generated new authentication token"),
    ("ray._private.worker", logging.INFO, "Started a local Ray instance"),
)


class _DropAnnouncements(logging.Filter):
    def __init__(self, rules):
        super().__init__()
        self.rules = tuple(rules)  # (level, prefix)
        self.dropped: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a record we cannot read is not ours to drop
            return True
        for level, prefix in self.rules:
            if record.levelno == level and msg.startswith(prefix):
                self.dropped.append(msg)
                return False
        return True


@contextlib.contextmanager
def quiet_embedded_init():
    """Drop the `_QUIET` announcements logged while the block runs (the embedded ray.init()); yields
    the filters (their `dropped` lists say what was dropped).  The filters are removed afterwards."""
    installed = []
    for name in dict.fromkeys(n for n, _, _ in _QUIET):
        f = _DropAnnouncements((lvl, pre) for n, lvl, pre in _QUIET if n == name)
        logging.getLogger(name).addFilter(f)
        installed.append((name, f))
    try:
        yield [f for _, f in installed]
    finally:
        for name, f in installed:
            logging.getLogger(name).removeFilter(f)


def _single_machine_switch() -> None:
    """Make Ray pick the loopback address as node IP: the documented environment switch, and, when Ray
    was already imported (the switch is read at import), its module constant.  The only place actsearch
    touches a private Ray name; without it (another Ray version) the env var alone applies."""
    os.environ.setdefault(SINGLE_MACHINE_ENV, "0")
    if os.environ[SINGLE_MACHINE_ENV] != "0" or "ray" not in sys.modules:
        return
    try:
        from ray._private import ray_constants
    except ImportError:
        return
    if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False


def start_embedded_ray(**init_kwargs) -> Optional[subprocess.Popen]:
    """ray.init() of a local, loopback-only Ray, plus the watchdog that ends its processes if this
    process dies without shutting Ray down.  Returns the watchdog process (None where there is none)."""
    _single_machine_switch()
    import ray

    # address="local": always a new instance of our own; without it ray.init() joins any Ray already
    # running on the machine (another search's, a test session's), which is neither loopback-only by our
    # switch nor ours to shut down.  Ray's defaults apply (token authentication on); only its
    # announcements of them are dropped (quiet_embedded_init)
    with quiet_embedded_init():
        ray.init(address="local", **init_kwargs)
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in LOOPBACK:
        warnings.warn(f"the embedded Ray's node address is {node_ip}, not loopback: its servers may be "
                      f"reachable from the network ({SINGLE_MACHINE_ENV}=0 was not honoured by this Ray)",
                      RuntimeWarning, stacklevel=2)
    return start_watchdog()


def start_watchdog(pid: Optional[int] = None) -> Optional[subprocess.Popen]:
    pid = os.getpid() if pid is None else pid
    if _start_time(pid) is None:  # no /proc: nothing to watch with
        return None
    return subprocess.Popen([sys.executable, "-m", "actsearch.ray_local", "--watch", str(pid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


def stop_watchdog(proc: Optional[subprocess.Popen]) -> None:
    """After a clean ray.shutdown(): nothing is left to stop, so the watchdog ends now."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- /proc -----------------------------------------------------------------------------------------
def _stat(pid: int) -> Optional[list[str]]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after its last ')'
    return raw[raw.rfind(")") + 2:].split()


def _start_time(pid: int) -> Optional[int]:
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None  # field 22: starttime


def _alive(pid: int, start: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z" and len(fields) > 19 and int(fields[19]) == start


def is_ray_process(pid: int) -> bool:
    """A process Ray started: raylet, gcs_server, ray::* workers and agents, or a Python running a
    module from Ray's package (dashboard, log monitor, ...)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    head = os.path.basename(argv[0]).decode(errors="replace") if argv and argv[0] else ""
    return (head in ("raylet", "gcs_server") or head.startswith("ray::")
            or any(b"/ray/" in a or a.startswith(b"ray.") for a in argv[:4]))


def descendants(pid: int) -> dict[int, int]:
    """{pid: start time} of every process below `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    start: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if fields and len(fields) > 19:
            children.setdefault(int(fields[1]), []).append(int(name))
            start[int(name)] = int(fields[19])
    out: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if p in out or p not in start:
            continue
        out[p] = start[p]
        todo.extend(children.get(p, []))
    return out


def watch(driver: int) -> None:
    """The watchdog's loop: record the driver's descendants while it lives, stop them when it is gone."""
    driver_start = _start_time(driver)
    me = os.getpid()
    known: dict[int, int] = {}
    while driver_start is not None and _alive(driver, driver_start):
        known.update({p: t for p, t in descendants(driver).items() if p not in known and is_ray_process(p)})
        known.pop(me, None)
        known = {p: s for p, s in known.items() if _alive(p, s)}
        time.sleep(WATCH_INTERVAL_S)
    stop_processes(known)


def stop_processes(procs: dict[int, int], grace_s: float = TERM_GRACE_S) -> None:
    """SIGTERM every process of {pid: start time} still alive, SIGKILL what is left after `grace_s`
    (a pid reused by another process since is never signalled: its start time differs)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = {p: s for p, s in procs.items() if _alive(p, s)}
        for p in live:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.time() + grace_s
        while sig == signal.SIGTERM and time.time() < deadline and any(_alive(p, s) for p, s in live.items()):
            time.sleep(0.1)
        procs = live


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--watch":
        watch(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m actsearch.ray_local --watch PID")

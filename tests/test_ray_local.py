"""The embedded Ray a search starts: loopback only, and nothing left behind when the driver is killed.

Each test starts its own driver process (a real RayExecutor with embedded Ray, as `actsearch search`
makes one), never the test session's shared Ray, and stops only the processes it started, by PID.
"""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actsearch.ray_local import _alive, descendants, is_ray_process

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

DRIVER = """
import os, sys, time
from actsearch.executor import RayExecutor
from actsearch.search import SearchConfig
cfg = SearchConfig(space="swish", strategy="random", tasks=["digits-cnn"], budget=2, seeds=1, batch=1,
                   steps=20, workers=1)
ex = RayExecutor(cfg, cache_dir=sys.argv[1])
import ray
ray.get([w.pid.remote() for w in ex.idle])  # a worker actor is up, as in a running search
print("READY", flush=True)
time.sleep(600)
"""


def _listening_addresses(pids: set[int]) -> list[str]:
    """Local addresses of the TCP sockets in LISTEN state owned by `pids` (from /proc/net/tcp{,6})."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    out = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(f[1].split(":")[0])
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            addr = ipaddress.ip_address(words)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
                addr = addr.ipv4_mapped
            out.append(str(addr))
    return out


def test_killed_driver_leaves_no_ray_process_and_embedded_ray_binds_loopback(ray_cluster, tmp_path):
    """With another Ray running on the machine (the test session's), the driver still starts a Ray of its
    own: a bare ray.init() joined the running one, and its actor was cancelled there."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "cache")], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.time() + 120
        while time.time() < deadline and "READY" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "READY" in line, "the driver did not start its embedded Ray"
        time.sleep(1.5)  # the watchdog samples the driver's processes every 0.5 s
        ray_procs = {p: t for p, t in descendants(proc.pid).items() if is_ray_process(p)}
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in ray_procs if _alive(p, ray_procs[p])}
        assert {"raylet", "gcs_server"} <= names and any(n.startswith("ray::") for n in names), names

        # issue 22 item 13: no listening socket of this Ray on a non-loopback address
        addrs = _listening_addresses(set(ray_procs) | {proc.pid})
        assert addrs, "found no listening socket of the embedded Ray"
        assert all(ipaddress.ip_address(a).is_loopback for a in addrs), addrs

        os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
        proc.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p, t) for p, t in ray_procs.items()):
            time.sleep(0.25)
        left = [p for p, t in ray_procs.items() if _alive(p, t)]
        assert not left, f"Ray processes left running after kill -9 of the driver: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()

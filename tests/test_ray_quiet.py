"""The embedded Ray starts quietly, with Ray's security defaults (token authentication) intact; a
cluster given by --address is joined exactly as Ray joins it, with nothing of this applied.

The start runs in a subprocess: the test session shares one Ray instance (conftest.py), and a start's
log lines go to the starting process's stderr."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from actsearch import ray_local
from actsearch.search import SearchConfig

DRIVER = """
import os, sys
from actsearch.executor import RayExecutor
from actsearch.search import SearchConfig
cfg = SearchConfig(space="swish", strategy="random", tasks=["digits-cnn"], budget=1, seeds=1, batch=1,
                   steps=20, workers=1)
ex = RayExecutor(cfg, cache_dir=sys.argv[1])   # as `actsearch search` starts its embedded Ray
from ray._raylet import AuthenticationMode, get_authentication_mode
print("AUTH_MODE", get_authentication_mode() == AuthenticationMode.TOKEN, os.environ.get("RAY_AUTH_MODE"), flush=True)
ex.shutdown()
print("DONE", flush=True)
"""

AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
WORKER_LOGGER = "ray._private.worker"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the embedded Ray's start is checked on Linux")
def test_embedded_ray_starts_quietly_with_token_authentication_on(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}  # Ray's defaults
    env["HOME"] = str(tmp_path / "home")  # Ray creates ~/.ray/auth_token here (and says so, at INFO), not in ours
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "cache")], env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "DONE" in proc.stdout, out[-3000:]
    assert "Token authentication" not in out, out
    assert "Started a local Ray instance" not in out, out
    assert "authentication token" not in out, out
    # quiet, not weakened: the embedded Ray runs with token authentication, with a token of its own
    assert "AUTH_MODE True token" in proc.stdout, out
    assert (tmp_path / "home" / ".ray" / "auth_token").exists()


def test_only_the_announcements_are_dropped_and_only_during_the_init():
    auth, worker = logging.getLogger(AUTH_LOGGER), logging.getLogger(WORKER_LOGGER)
    before = (list(auth.filters), list(worker.filters))
    seen: list = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    levels = (auth.level, worker.level)
    for lg in (auth, worker):
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        with ray_local.quiet_embedded_init() as filters:
            auth.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled ...")
            auth.info("Generated new authentication token and saved to /x/.ray/auth_token")
            worker.info("Started a local Ray instance.")
            auth.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
            auth.error("Token authentication is enabled for this Ray cluster, but no token was found")
            worker.warning("Started a local Ray instance.")  # not at the level Ray announces it: kept
            worker.info("View the dashboard at http://127.0.0.1:8265")
        worker.info("Started a local Ray instance.")  # after the embedded init: kept
    finally:
        for lg, lvl in zip((auth, worker), levels):
            lg.removeHandler(handler)
            lg.setLevel(lvl)
    assert seen == ["Token authentication is disabled for this Ray cluster. Anyone with network access ...",
                    "Token authentication is enabled for this Ray cluster, but no token was found",
                    "Started a local Ray instance.", "View the dashboard at http://127.0.0.1:8265",
                    "Started a local Ray instance."]
    assert sum(len(f.dropped) for f in filters) == 3
    assert (auth.filters, worker.filters) == before  # removed again


class _Stop(Exception):
    """Raised by the fake ray.init: the test has seen the call."""


def _fake_ray(monkeypatch, calls):
    import ray

    def init(*args, **kwargs):
        calls.append({"args": args, "kwargs": kwargs, "auth_env": os.environ.get("RAY_AUTH_MODE"),
                      "switch_env": os.environ.get(ray_local.SINGLE_MACHINE_ENV),
                      "filters": [list(logging.getLogger(n).filters) for n in (AUTH_LOGGER, WORKER_LOGGER)]})
        raise _Stop()

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


def test_a_cluster_address_is_joined_as_ray_joins_it(monkeypatch):
    """--address: a plain ray.init(address=..., log_to_driver=False): no auth setting, no environment, no
    log filter of the embedded start, and start_embedded_ray is not called."""
    from actsearch.executor import RayExecutor

    calls: list = []
    _fake_ray(monkeypatch, calls)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the user's (the cluster's) setting
    monkeypatch.delenv(ray_local.SINGLE_MACHINE_ENV, raising=False)

    def no_embedded(**kw):
        raise AssertionError("start_embedded_ray was called for a cluster address")

    monkeypatch.setattr(ray_local, "start_embedded_ray", no_embedded)
    with pytest.raises(_Stop):
        RayExecutor(SearchConfig(address="10.0.0.5:6379"))
    (call,) = calls
    assert call["args"] == () and call["kwargs"] == {"address": "10.0.0.5:6379", "log_to_driver": False}
    assert call["auth_env"] == "token" and call["switch_env"] is None
    assert not any(isinstance(f, ray_local._DropAnnouncements) for fs in call["filters"] for f in fs)
    assert os.environ["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize("mode", [None, "token", "disabled"])
def test_the_embedded_start_leaves_the_auth_mode_to_ray_and_the_user(monkeypatch, mode):
    """The embedded ray.init() gets the caller's arguments and address="local" and nothing about
    authentication: Ray's default (token) when RAY_AUTH_MODE is unset, the user's choice when it is set."""
    calls: list = []
    _fake_ray(monkeypatch, calls)
    if mode is None:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    monkeypatch.setattr(ray_local, "_single_machine_switch", lambda: None)  # not this process's Ray constants
    with pytest.raises(_Stop):
        ray_local.start_embedded_ray(include_dashboard=False, log_to_driver=False)
    (call,) = calls
    assert call["kwargs"] == {"address": "local", "include_dashboard": False, "log_to_driver": False}
    assert call["auth_env"] == mode and os.environ.get("RAY_AUTH_MODE") == mode
    assert all(any(isinstance(f, ray_local._DropAnnouncements) for f in fs) for fs in call["filters"])
    # the filters went away with the failed init too
    assert not any(isinstance(f, ray_local._DropAnnouncements)
                   for n in (AUTH_LOGGER, WORKER_LOGGER) for f in logging.getLogger(n).filters)

"""``advgui leaderboard`` on a Ray cluster: one local cluster (127.0.0.1, 2 CPUs) started here
for the whole module, real MNIST and three small trained models. CI installs Ray (the test
extra); a machine without it skips this module."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from advgui.core import leaderboard
from advgui.core.progress import Cancelled, CancelToken

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
#: Ray titles a worker process ``ray::FUNCTION`` while it runs a task of FUNCTION.
TASK_TITLE = b"ray::run_task"
CFG = {"attack": "pgd", "eps": 0.1, "n": 60, "chunk": 20}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A 2-CPU Ray cluster on 127.0.0.1 whose workers import this checkout's advgui; shut down
    (its processes ended) after the module."""
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "ADVGUI_HOME": str(tmp_path_factory.mktemp("ray-home")),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the raylet and its workers inherit these
    try:
        ray.init(
            num_cpus=2,
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def submissions(class_models, tmp_path_factory):
    d = tmp_path_factory.mktemp("submissions")
    for p in class_models:
        shutil.copy(p, d / p.name)
    (d / "mallory.keras").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
    return d


@pytest.fixture(scope="module")
def local(submissions, mnist):
    return leaderboard.run([submissions], mnist, leaderboard.LeaderboardConfig(**CFG))


def _task_pids() -> list[int]:
    """Processes of this machine running a leaderboard task now."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().startswith(TASK_TITLE):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_cluster_ranks_as_the_local_run(cluster, submissions, mnist, local):
    result = leaderboard.run(
        [submissions], mnist, leaderboard.LeaderboardConfig(**CFG), cluster=cluster
    )
    assert result["executor"] == f"ray {cluster}"
    assert leaderboard.comparable(result) == leaderboard.comparable(local)
    assert [e["model"] for e in result["ranking"]] == [e["model"] for e in local["ranking"]]
    (bad,) = result["refused"]
    assert bad["file"].endswith("mallory.keras") and "config.json" in bad["reason"]
    assert result["tasks"] == 9


@pytest.mark.parametrize(
    "certify",
    [{"certify": "smoothing", "sigma": 0.25, "n_samples": 200, "n0": 20, "radius": 0.25},
     {"certify": "ibp"}],
    ids=["smoothing", "ibp"],
)  # fmt: skip
def test_cluster_certifies_as_the_local_run(cluster, submissions, mnist, certify):
    """Each chunk draws its own noise from the run's seed and its place, wherever it runs."""
    cfg = {**CFG, "n": 40, **certify}
    here = leaderboard.run([submissions], mnist, leaderboard.LeaderboardConfig(**cfg))
    there = leaderboard.run(
        [submissions], mnist, leaderboard.LeaderboardConfig(**cfg), cluster=cluster
    )
    assert there["executor"] == f"ray {cluster}" and there["tasks"] == 6
    assert leaderboard.comparable(there) == leaderboard.comparable(here)
    figures = [e["certified_accuracy"] for e in there["ranking"]]
    assert len(figures) == 3 and all(0.0 <= f <= 1.0 for f in figures)
    if certify["certify"] == "smoothing":  # plain models keep most images at sigma 0.25
        assert max(figures) > 0.5
    else:  # IBP is vacuous on normally trained models, never above the attack's figure
        assert all(e["certified_accuracy"] <= e["robust_accuracy"] for e in there["ranking"])


def test_killed_worker_is_retried_and_the_result_is_unchanged(cluster, submissions, mnist, local):
    killed: list[int] = []

    def progress(update):
        if killed or update.message.startswith("checking"):
            return
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            pids = _task_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            else:
                time.sleep(0.05)

    result = leaderboard.run(
        [submissions], mnist, leaderboard.LeaderboardConfig(**CFG), cluster=cluster,
        progress=progress,
    )  # fmt: skip
    assert killed, "no worker was seen running a task"
    assert leaderboard.comparable(result) == leaderboard.comparable(local)


def test_stop_ends_every_task(cluster, submissions, mnist):
    token = CancelToken()

    def progress(update):
        if update.message.startswith("checking"):
            return
        deadline = time.monotonic() + 120
        while not _task_pids() and time.monotonic() < deadline:  # Stop while tasks run
            time.sleep(0.05)
        token.cancel()

    with pytest.raises(Cancelled):
        leaderboard.run(
            [submissions], mnist, leaderboard.LeaderboardConfig(**CFG), cluster=cluster,
            progress=progress, cancel=token,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        _task_pids() or ray.available_resources().get("CPU", 0) < 2
    ):
        time.sleep(0.1)
    assert not _task_pids(), "a task still runs after Stop"
    assert ray.available_resources().get("CPU", 0) == 2

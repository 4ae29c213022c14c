"""``advgui leaderboard``: the same 4 models ranked on the local path and on a 2-worker local Ray
cluster started here, with throughput and the overhead per task.

What is measured (one process, the local run first, then the cluster run):

- wall seconds of each run and tasks per second;
- the seconds spent inside the tasks (load the model from bytes, trace, attack) and, for the
  cluster, the overhead per task: (wall x workers - task seconds) / tasks, i.e. what Ray's
  scheduling, transfers and idle workers cost beyond the work;
- that the two leaderboards agree (``leaderboard.comparable``).

Ray's start (``ray.init`` of a 2-CPU local cluster) is timed separately: a lab cluster is
started once (``ray start``) and serves many runs.

    .venv/bin/python benchmarks/bench_leaderboard.py [--attack pgd] [--n 200] [--chunk 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import harness

from advgui.core import leaderboard, models, training

#: Four models of different strength, trained for one epoch on a few thousand images.
MODELS = (("m1-mlp", "mlp", 3000, 1), ("m2-cnn", "cnn", 4000, 2), ("m3-mlp", "mlp", 6000, 3),
          ("m4-cnn", "cnn", 8000, 4))  # fmt: skip


def make_models(data, folder: Path) -> list[Path]:
    out = []
    for name, arch, n, seed in MODELS:
        cfg = training.TrainConfig(arch=arch, epochs=1, n_train=n, n_val=0, seed=seed)
        out.append(
            models.save_model(training.train(cfg, data).classifier, folder / f"{name}.keras")
        )
    return out


def report(label: str, result: dict, wall: float, workers: int) -> None:
    tasks, inside = result["tasks"], result["task_seconds"]
    overhead = (wall * workers - inside) / tasks
    print(
        f"{label:7}: {wall:6.1f} s wall, {tasks / wall:5.2f} tasks/s, {inside:6.1f} s inside "
        f"the tasks ({inside / tasks:.2f} s each), {result['workers']} worker process(es); "
        f"overhead {overhead:+.2f} s per task (wall x {workers} slot(s) - task time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", default="pgd")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument(
        "--local-only", action="store_true", help="the local path only (no Ray: a GPU machine)"
    )
    harness.add_device_option(parser)
    args = parser.parse_args()
    harness.use_device(args.device)
    harness.print_machine()
    data = harness.mnist()
    cfg = leaderboard.LeaderboardConfig(attack=args.attack, eps=args.eps, n=args.n,
                                        chunk=args.chunk)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        files = make_models(data, Path(tmp))
        print(f"{len(files)} models, {args.attack} at eps {args.eps:g}, {args.n} images in "
              f"chunks of {args.chunk}: {len(files) * -(-args.n // args.chunk)} tasks")  # fmt: skip
        t0 = time.perf_counter()
        local = leaderboard.run(files, data, cfg)
        report("local", local, time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        warm = leaderboard.run(files, data, cfg)
        report("local", warm, time.perf_counter() - t0, 1)
        print("(second local run: models loaded, attack traced)")
        if args.local_only:
            for e in local["ranking"]:
                print(f"  {e['rank']}. {e['model']}: robust {e['robust_accuracy']:.1%}")
            return
        import ray

        os.environ["PYTHONPATH"] = str(harness.ROOT)  # the workers import this checkout
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False)  # fmt: skip
        print(f"ray.init (2-CPU local cluster): {time.perf_counter() - t0:.1f} s")
        try:
            address = ray.get_runtime_context().gcs_address
            t0 = time.perf_counter()
            remote = leaderboard.run(files, data, cfg, cluster=address)
            report("ray x2", remote, time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            again = leaderboard.run(files, data, cfg, cluster=address)
            report("ray x2", again, time.perf_counter() - t0, 2)
            print("(first cluster run: each worker imports TensorFlow and traces the attack "
                  "inside its first tasks; second: workers warm)")  # fmt: skip
        finally:
            ray.shutdown()
    same = leaderboard.comparable(local) == leaderboard.comparable(remote)
    same &= leaderboard.comparable(local) == leaderboard.comparable(warm)
    same &= leaderboard.comparable(local) == leaderboard.comparable(again)
    print(f"leaderboards identical: {same}")
    for e in local["ranking"]:
        print(f"  {e['rank']}. {e['model']}: clean {e['clean_accuracy']:.1%}, robust "
              f"{e['robust_accuracy']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()

"""A long lab session in one process: 500 attacks and 20 (tiny) training runs, interleaved.

Reports what a long session must not show (issue 8):

- memory: resident set size (RSS) after a warm-up, then at the end; growth target < 100 MB;
- slowdown: median seconds per attack in the first and the last 100 attacks (same mix);
- model cycles: a new model loaded from a file, attacked with every method, dropped, 40
  times; RSS growth per cycle after 10 (target < 0.5 MB: whatever an attack keeps per model
  must go with it);
- TensorFlow retraces: every ``tf.function`` call that traced is counted (by wrapping
  ``Function.__call__`` and comparing ``experimental_get_tracing_count()`` before and after),
  per function name, before and after the warm-up. After warm-up only new models may trace
  (a bounded number per model); repeated attacks on a known model must not.

Attacks are made fresh for each run (as the Attack tab does) with varying parameters, on the
same model and on each newly trained one; every result goes into the results store (as the tab
does), so the store's writes are part of the session.

    .venv/bin/python benchmarks/bench_long_session.py [--attacks 500] [--trainings 20]
        [--model-cycles 40]
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import harness

TRACES: collections.Counter[str] = collections.Counter()


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def count_traces() -> None:
    """Count every trace of every tf.function (advgui's and Keras's) by name."""
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf

    original = pf.Function.__call__

    def call(self, *args, **kwargs):
        before = self.experimental_get_tracing_count()
        try:
            return original(self, *args, **kwargs)
        finally:
            traced = self.experimental_get_tracing_count() - before
            if traced:
                TRACES[self._name] += traced

    pf.Function.__call__ = call


#: (method, parameter sets cycled through, goal) - parameters vary as a user's would.
MIX = [
    ("fgsm", [{"eps": 0.1}, {"eps": 0.2}, {"eps": 0.3}], None),
    ("pgd", [{"eps": 0.1, "steps": 10}, {"eps": 0.3, "steps": 10, "restarts": 2}], None),
    ("bim", [{"eps": 0.2, "steps": 10}], None),
    ("targeted", [{"steps": 30, "lam": 0.05}, {"steps": 30, "lam": 0.1}], 3),
    ("noise", [{"steps": 30}], 7),
    ("deepfool", [{"steps": 20}], None),
    ("cw", [{"steps": 10, "search_steps": 1}], 2),
    ("jsma", [{}], 5),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", type=int, default=500)
    ap.add_argument("--trainings", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=100, help="attacks before the baseline")
    ap.add_argument("--model-cycles", type=int, default=40, help="load-attack-drop cycles")
    args = ap.parse_args()
    os.environ["ADVGUI_HOME"] = tempfile.mkdtemp(prefix="advgui-bench-long-")

    from advgui.core import training
    from advgui.core.attacks import ATTACKS, make_attack
    from advgui.core.results import ResultStore
    from advgui.core.store import ModelStore
    from advgui.core.tfimport import tf

    tf()
    harness.print_machine()  # before counting: its matmul probe traces too
    count_traces()
    mnist = harness.mnist()
    results, store = ResultStore(), ModelStore()
    mix = [m for m in MIX if m[0] in ATTACKS]

    def train(seed: int):
        cfg = training.TrainConfig(
            arch="mlp", epochs=1, n_train=1000, n_val=100, batch_size=100, seed=seed
        )
        clf = training.train(cfg, mnist).classifier
        store.add(clf)
        return clf

    t_start = time.perf_counter()
    main_clf = train(0)
    times: list[tuple[str, float]] = []
    cpu: list[float] = []  # CPU seconds per attack: unlike wall time, not stretched by others
    rss_points: list[tuple[int, float]] = []
    traces_at_warmup: collections.Counter[str] | None = None
    rss_warm = float("nan")
    every = max(1, args.attacks // max(1, args.trainings - 1))
    trainings = 1
    extra_model = None
    for i in range(args.attacks):
        if i > 0 and i % every == 0 and trainings < args.trainings:
            extra_model = train(trainings)  # a new model: the next attack uses it once
            trainings += 1
        name, param_sets, goal = mix[i % len(mix)]
        params = param_sets[(i // len(mix)) % len(param_sets)]
        clf = extra_model if extra_model is not None else main_clf
        extra_model = None
        k = (7 * i) % len(mnist.y_test)
        x, y = mnist.x_test[k : k + 1], mnist.y_test[k : k + 1]
        t0, c0 = time.perf_counter(), time.process_time()
        res = make_attack(name, **params)(clf, x, labels=y, goals=goal)
        times.append((name, time.perf_counter() - t0))
        cpu.append(time.process_time() - c0)
        results.add("attack", res.record(0), name=name, arrays={"x_adv": res.x_adv})
        del res
        if i + 1 == args.warmup:
            gc.collect()
            rss_warm = rss_mb()
            traces_at_warmup = collections.Counter(TRACES)
        if (i + 1) % 50 == 0:
            gc.collect()
            rss_points.append((i + 1, rss_mb()))
            print(
                f"  {i + 1} attacks, {trainings} trainings: RSS {rss_points[-1][1]:.0f} MB, "
                f"traces {sum(TRACES.values())}",
                flush=True,
            )
    while trainings < args.trainings:
        train(trainings)
        trainings += 1
    gc.collect()
    rss_end = rss_mb()
    total = time.perf_counter() - t_start

    def med(chunk):
        return statistics.median(t for _, t in chunk)

    n = min(100, (len(times) - args.warmup) // 2)
    early, late = times[args.warmup : args.warmup + n], times[-n:]
    after = TRACES - (traces_at_warmup or collections.Counter())
    per_method = collections.defaultdict(list)
    for name, t in times:
        per_method[name].append(t)
    print(f"\nlong session: {len(times)} attacks, {trainings} training runs, {total:.0f} s")
    print(
        f"RSS after warm-up ({args.warmup} attacks): {rss_warm:.0f} MB; at the end: "
        f"{rss_end:.0f} MB; growth {rss_end - rss_warm:+.0f} MB (target < 100 MB)"
    )
    print("RSS every 50 attacks (MB): " + ", ".join(f"{r:.0f}" for _, r in rss_points))
    print(
        f"median s/attack, attacks {args.warmup + 1}-{args.warmup + n}: {med(early):.3f}; "
        f"last {n}: {med(late):.3f}; ratio late/early {med(late) / med(early):.2f} "
        "(target: no slowdown, ~1.0)"
    )
    c_early = statistics.median(cpu[args.warmup : args.warmup + n])
    c_late = statistics.median(cpu[-n:])
    print(
        f"median CPU s/attack, same windows: {c_early:.3f} vs {c_late:.3f}; "
        f"ratio {c_late / c_early:.2f}"
    )
    for name, ts in per_method.items():
        half = len(ts) // 2
        print(
            f"  {name:9s} first half {statistics.median(ts[:half]):.3f} s, "
            f"second half {statistics.median(ts[half:]):.3f} s"
        )
    print(
        f"tf.function traces: {sum(TRACES.values())} in all, "
        f"{sum((traces_at_warmup or {}).values())} during warm-up, "
        f"{sum(after.values())} after it ({trainings - 1} new models trained after warm-up "
        "begin tracing their own functions)"
    )
    for fname, count in sorted(after.items(), key=lambda kv: -kv[1]):
        print(f"  after warm-up: {fname}: {count}")
    model_cycles(main_clf, mnist, mix, args.model_cycles)
    shutil.rmtree(os.environ["ADVGUI_HOME"], ignore_errors=True)


def model_cycles(clf, mnist, mix, cycles: int) -> None:
    """Load a model file, attack it with every method, drop it; RSS growth per cycle."""
    from advgui.core import models
    from advgui.core.attacks import make_attack

    if cycles < 11:
        return
    path = Path(os.environ["ADVGUI_HOME"]) / "cycle.keras"
    models.save_model(clf, path)
    x, y = mnist.x_test[:4], mnist.y_test[:4]
    points = []
    t0 = time.perf_counter()
    for _ in range(cycles):
        model = models.load_model(path)
        for name, param_sets, goal in mix:
            make_attack(name, **param_sets[0])(model, x, labels=y, goals=goal)
        del model
        gc.collect()
        points.append(rss_mb())
    per_cycle = (points[-1] - points[9]) / (cycles - 10)
    print(
        f"model cycles: {cycles} x (load, {len(mix)} attacks on 4 images, drop) in "
        f"{time.perf_counter() - t0:.0f} s; RSS after 10: {points[9]:.0f} MB, after {cycles}: "
        f"{points[-1]:.0f} MB; growth {per_cycle:+.2f} MB per cycle (target < 0.5 MB)"
    )


if __name__ == "__main__":
    main()

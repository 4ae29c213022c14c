"""Speed of the deck's targeted attack and of FGSM, against references measured in the same run.

Targets (issues 4 and 20), on an idle CPU: the targeted attack, one lambda and 500 steps on one
image, <= 0.3 s; with ``lam='auto'`` (up to 8 searches) <= 3 s; FGSM over the 10,000 test
images <= 2 s. Those seconds were set on one CPU; on any other read the ratios to the
references, measured in the same run:

- the same 500 Adam steps as a plain compiled TensorFlow loop written here (one
  ``tf.function`` holding a ``tf.while_loop``: what a TensorFlow user would write), and as a
  Python loop of one compiled step each (what advgui's chunked loop replaces);
- FGSM as a plain compiled TensorFlow function over batches of 1,000 (the same arithmetic),
  and ART 1.20's FastGradientMethod (``pip install '.[bench]'``; skipped with a note when ART
  is missing).

Figures measured on this project's CPU, and how to read them on another: README.md, *Speed
on your CPU*.

    .venv/bin/python benchmarks/bench_attack.py [--model M.keras] [--repeats 5]
"""

from __future__ import annotations

import argparse

import harness
import numpy as np

from advgui.core.tfimport import tf


def _adam_step(t, model, x0, onehot, lam: float, lr: float, steps: int):
    """One step of the descent advgui runs (Adam, cosine-decayed step size, clip to [0, 1]) on
    cross-entropy + lam * ||x - x0||^2."""

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

    return step


def compiled_loop_reference(clf, x, goal: int, steps: int, lam: float, lr: float):
    """The same descent as one compiled function: a tf.while_loop over the steps, the costs
    collected in a TensorArray (a plain, well-written TensorFlow attack loop)."""
    t = tf()
    x0 = t.constant(x)
    onehot = t.constant(np.eye(10, dtype=np.float32)[[goal]])
    step = _adam_step(t, clf.logits_model, x0, onehot, lam, lr, steps)

    @t.function
    def run(x):
        costs = t.TensorArray(t.float32, size=steps)
        m = v = t.zeros_like(x)
        for i in t.range(steps):
            x, m, v, cost = step(x, m, v, t.cast(i + 1, t.float32))
            costs = costs.write(i, cost)
        return x, costs.stack()

    return lambda: run(x0)[0].numpy()


def python_loop_reference(clf, x, goal: int, steps: int, lam: float, lr: float):
    """The same descent, one compiled step per Python iteration."""
    t = tf()
    x0 = t.constant(x)
    onehot = t.constant(np.eye(10, dtype=np.float32)[[goal]])
    step = t.function(_adam_step(t, clf.logits_model, x0, onehot, lam, lr, steps))

    def run():
        xv, m, v = x0, t.zeros_like(x0), t.zeros_like(x0)
        for i in range(steps):
            xv, m, v, cost = step(xv, m, v, t.constant(float(i + 1)))
            float(cost[0])  # a Python loop reports each step's cost
        return xv.numpy()

    return run


def fgsm_reference(clf, eps: float, batch: int = 1000):
    """FGSM as a plain compiled TensorFlow function, over batches (same arithmetic as
    advgui's: the sign of the cross-entropy's input gradient)."""
    t = tf()
    model = clf.logits_model

    @t.function(input_signature=[t.TensorSpec([None, 28, 28, 1]), t.TensorSpec([None], t.int64)])
    def fgsm(x, y):
        with t.GradientTape() as tape:
            tape.watch(x)
            loss = t.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x))
        return t.clip_by_value(x + eps * t.sign(tape.gradient(loss, x)), 0.0, 1.0)

    def run(x, y):
        y = y.astype(np.int64)
        return np.concatenate(
            [fgsm(x[i : i + batch], y[i : i + batch]).numpy() for i in range(0, len(x), batch)]
        )

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--data", help="MNIST folder (default: $ADVGUI_DATA)")
    parser.add_argument("--repeats", type=int, default=5)
    harness.add_device_option(parser)
    args = parser.parse_args()
    harness.use_device(args.device)
    from advgui.core import training, tuning
    from advgui.core.attacks import make_attack
    from advgui.core.attacks.deck import _Descent

    harness.print_machine()
    mnist = harness.mnist(args.data)
    clf = harness.load_or_bench_cnn(args.model, mnist)
    print(f"model {clf.name}: clean test accuracy {clf.accuracy(mnist.x_test, mnist.y_test):.4f}")
    four = mnist.x_test[np.flatnonzero(mnist.y_test == 4)[:1]]
    reps = args.repeats

    # --- the deck's targeted attack, one lambda, 500 steps, one image
    lam, steps, lr = 0.05, 500, 0.01
    atk = make_attack("targeted", lam=lam, steps=steps, step_size=lr)
    assert isinstance(atk, _Descent)
    timings = harness.side_by_side(
        {
            "attack": lambda: atk(clf, four, goals=2),
            "descent": lambda: atk.descend(
                clf, four, four, np.array([2]), np.array([lam]), report=lambda *a: None,
                cancel=None,
            ),
            "compiled": compiled_loop_reference(clf, four, 2, steps, lam, lr),
            "python": python_loop_reference(clf, four, 2, steps, lam, lr),
        },
        repeats=reps,
    )  # fmt: skip
    t_attack, t_loop = timings["attack"].median, timings["descent"].median
    t_comp, t_py = timings["compiled"].median, timings["python"].median
    conf = timings["attack"].result.probs_after[0, 2]
    print(f"\ntargeted attack, lambda 0.05, 500 steps, one image (medians of {reps}, side by side)")
    print(f"  advgui chunked compiled loop (descent only): {t_loop:.3f} s   target <= 0.3 s")
    print(f"  advgui whole attack (+ predictions, 8-bit finish): {t_attack:.3f} s")
    print(f"  reference, plain compiled TF loop (tf.while_loop): {t_comp:.3f} s -> advgui "
          f"descent {t_comp / t_loop:.2f}x faster")  # fmt: skip
    print(f"  reference, Python loop of compiled steps: {t_py:.3f} s -> advgui descent "
          f"{t_py / t_loop:.2f}x faster (goal 2 at {100 * conf:.1f}%)")  # fmt: skip
    chosen = tuning.settings()
    print(f"  advgui's one-thread runner for up to {chosen.one_thread_max_batch} image(s): "
          f"{chosen.reasons['one_thread_max_batch']}")  # fmt: skip

    # The deck itself attacked its MLP (784-hidden-10): the same attack on the app's MLP.
    mlp = training.train(training.TrainConfig.for_arch("mlp", epochs=1), mnist).classifier
    tm = harness.timed(lambda: atk(mlp, four, goals=2), repeats=reps)
    acc_mlp = mlp.accuracy(mnist.x_test, mnist.y_test)
    print(
        f"  same attack on the deck's network, an MLP ({100 * acc_mlp:.1f}%): {tm.median:.3f} s "
        f"(goal 2 at {100 * tm.result.probs_after[0, 2]:.1f}%)"
    )

    auto = make_attack("targeted")
    tm = harness.timed(lambda: auto(clf, four, goals=2), repeats=max(1, reps // 2), warmup=0)
    res = tm.result
    print("\ntargeted attack, lambda auto (confidence 0.9), 500 steps per search")
    print(
        f"  {tm.median:.3f} s for {len(res.extra['lam_tried'])} searches   target <= 3 s; "
        f"ratio to one-lambda attack {tm.median / t_attack:.2f}"
    )
    print(
        f"  chosen lambda {res.extra['lam'][0]:.4g}: goal 2 at "
        f"{100 * res.probs_after[0, 2]:.1f}%, L2 {res.l2[0]:.3f}"
    )

    # --- FGSM over the whole test set, against a plain compiled TF function and ART
    x, y = mnist.x_test, mnist.y_test
    fgsm = make_attack("fgsm", eps=0.3)
    ref = fgsm_reference(clf, 0.3)
    fns = {"advgui": lambda: fgsm(clf, x, labels=y), "compiled": lambda: ref(x, y)}
    try:
        from art.attacks.evasion import FastGradientMethod

        art_fgsm = FastGradientMethod(harness.art_classifier(clf), eps=0.3, batch_size=256)
        onehot = np.eye(10, dtype=np.float32)[y]
        fns["ART"] = lambda: art_fgsm.generate(x, y=onehot)
    except ImportError:
        print("  ART not installed: pip install '.[bench]' for the side-by-side figure")
    timings = harness.side_by_side(fns, repeats=max(3, reps // 2))
    res = timings["advgui"].result
    print(f"\nFGSM eps 0.3 on 10,000 test images (medians of {len(timings['advgui'].seconds)})")
    print(
        f"  advgui: {timings['advgui'].median:.3f} s with before/after predictions, "
        f"{res.seconds:.3f} s attack only ({len(x) / res.seconds:,.0f} images/s)   target <= 2 s;"
        f" accuracy -> {res.summary()['robust_accuracy']:.4f}"
    )
    t_ref = timings["compiled"].median
    same = float(np.mean(np.abs(timings["compiled"].result - res.x_adv).reshape(len(x), -1).max(1)
                         < 1e-5))  # fmt: skip
    print(f"  reference, plain compiled TF function (batches of 1,000): {t_ref:.3f} s "
          f"({len(x) / t_ref:,.0f} images/s); advgui attack-only {t_ref / res.seconds:.2f}x its "
          f"speed; identical images: {100 * same:.1f}%")  # fmt: skip
    if "ART" in timings:
        t_art = timings["ART"].median
        x_art = timings["ART"].result
        same = float(np.mean(np.abs(x_art - res.x_adv).reshape(len(x), -1).max(1) < 1e-5))
        print(
            f"  ART 1.20 FastGradientMethod: {t_art:.3f} s ({len(x) / t_art:,.0f} images/s); "
            f"accuracy -> {clf.accuracy(x_art, y):.4f}; advgui attack-only "
            f"{t_art / res.seconds:.2f}x its speed; identical images: {100 * same:.1f}%"
        )
    print(harness.interpret())


if __name__ == "__main__":
    main()

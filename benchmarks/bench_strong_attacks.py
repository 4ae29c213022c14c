"""Speed of the strong attacks against the peers users would pick, in the same run, same CPU.

Targets (issues 5 and 20):
- PGD-40 (eps 0.3, step 0.01, one random start) on a CNN over 1,000 test images, best batch
  against best batch: at least 1.5x torchattacks 3.5.1 (PyTorch, the same CNN with the Keras
  weights copied over, logits checked to agree within 1e-4) and at least 3x ART 1.20; attack
  FLOPs at least 50% of this CPU's measured float32 matmul rate. Foolbox 3.3.4 is run too when
  it imports (not a project dependency), else the reason it does not is printed.
- C&W L2, 9 binary-search steps x 100 iterations, on 100 images: at most 60 s.

PGD runs in float32 (identical arithmetic to ART's and torchattacks') and once more with the
opt-in bfloat16 gradients where this CPU offers them (advgui.core.tuning), reported apart; with
``--precision mixed`` also under this device's mixed policy (core/precision.py: the whole
attack on the mixed clone, re-checked by the float32 model), timed in the same rounds as
float32, with the ratio, both robust accuracies and the images that flip between them.
Each figure is the median of ``--repeats`` passes; the three libraries alternate per batch size
so that a shared machine's load falls on all of them alike.

FLOPs are counted analytically from the layers (2 per multiply-add): one PGD step is one
forward pass plus the backward pass to the input, which costs about as much again.

Figures measured on this project's CPU, and how to read them on another: README.md, *Speed
on your CPU*.

    .venv/bin/python benchmarks/bench_strong_attacks.py [--model M.keras] [--n 1000]
        [--repeats 3] [--skip-art] [--skip-torch] [--quick] [--device cpu|gpu]
        [--precision float32|mixed]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

# TensorFlow's default thread pools, for ART's sake: advgui sets TF_OVERRIDE_GLOBAL_THREADPOOL
# (one-thread sessions for attacks on a few images), which measured here slows ART's eager,
# op-by-op PGD by 15-20% and advgui's compiled PGD by 2%. Unset, both run as in a plain TF
# process. Override from the shell to measure the app's setting.
os.environ.setdefault("TF_OVERRIDE_GLOBAL_THREADPOOL", "0")

import harness
import peers

from advgui.core import precision, tuning
from advgui.core.attacks import make_attack
from advgui.core.attacks.batch import run_batch

#: Both sides at several batch sizes, best against best: oneDNN convolutions are often faster
#: on batches that fit the caches, ART's and torchattacks' eager steps on large ones.
BATCH_SIZES = (128, 256, 500, 1000)


def art_pgd(clf, batch_size: int):
    """ART's PGD-40 as a function of (x, y) (built once; traced on a few images first)."""
    from art.attacks.evasion import ProjectedGradientDescent

    est = harness.art_classifier(clf)
    attack = ProjectedGradientDescent(
        est, norm=np.inf, eps=0.3, eps_step=0.01, max_iter=40, num_random_init=1,
        batch_size=batch_size, verbose=False,
    )  # fmt: skip
    return lambda x, y: attack.generate(x, y=y)


def foolbox_pgd(clf, x, y) -> tuple[float, float] | str:
    try:
        import foolbox as fb
    except Exception as err:  # not a dependency: report why it is not compared
        return f"not importable: {type(err).__name__}: {err}"
    try:
        from advgui.core.tfimport import tf

        t = tf()
        fmodel = fb.TensorFlowModel(clf.logits_model, bounds=(0, 1))
        attack = fb.attacks.LinfPGD(abs_stepsize=0.01, steps=40, random_start=True)
        xs, ys = t.constant(x), t.constant(y)
        attack(fmodel, xs[:8], ys[:8], epsilons=0.3)
        t0 = time.perf_counter()
        advs = []
        for i in range(0, len(x), 500):
            _, adv, _ = attack(fmodel, xs[i : i + 500], ys[i : i + 500], epsilons=0.3)
            advs.append(np.asarray(adv))
        seconds = time.perf_counter() - t0
        return len(x) / seconds, clf.accuracy(np.concatenate(advs), y)
    except Exception as err:
        return f"fails: {type(err).__name__}: {err}"


def parity(clf, mnist) -> None:
    """ART 1.20 and advgui side by side at the settings of
    tests/core/attacks/test_against_art.py."""
    from art.attacks.evasion import (
        CarliniL2Method,
        DeepFool,
        FastGradientMethod,
        ProjectedGradientDescent,
        SaliencyMapMethod,
    )

    est = harness.art_classifier(clf)

    def l2(a, b):
        return np.sqrt(((a - b).astype(np.float64) ** 2).reshape(len(a), -1).sum(axis=1))

    x, y = mnist.x_test[:200], mnist.y_test[:200]
    ours = make_attack("fgsm", eps=0.1)(clf, x, labels=y).summary()["robust_accuracy"]
    ref = FastGradientMethod(est, eps=0.1, batch_size=200).generate(x, y=y)
    print(
        f"parity FGSM eps 0.1, robust accuracy: advgui {ours:.3f}, ART {clf.accuracy(ref, y):.3f}"
    )
    pgd = make_attack("pgd", eps=0.1, step_size=0.01, steps=10, random_start=False)
    ours = pgd(clf, x, labels=y).summary()["robust_accuracy"]
    ref = ProjectedGradientDescent(
        est, eps=0.1, eps_step=0.01, max_iter=10, num_random_init=0, batch_size=200,
        verbose=False,
    ).generate(x, y=y)  # fmt: skip
    print(
        f"parity PGD-10 eps 0.1, robust accuracy: advgui {ours:.3f}, ART {clf.accuracy(ref, y):.3f}"
    )
    x, y = mnist.x_test[200:500], mnist.y_test[200:500]
    ok = clf.predict(x) == y
    x, y = x[ok], y[ok]
    xs, ys = x[:30], y[:30]
    df = make_attack("deepfool")(clf, xs, labels=ys)
    ref = DeepFool(est, max_iter=50, epsilon=0.02, batch_size=30, verbose=False).generate(xs)
    fooled = clf.predict(ref) != ys
    print(
        f"parity DeepFool, median L2: advgui {np.median(df.l2[df.success]):.3f}, "
        f"ART {np.median(l2(ref, xs)[fooled]):.3f}"
    )
    xs, ys = x[:6], y[:6]
    cw = make_attack("cw", steps=60, search_steps=5, c=1.0)(clf, xs, labels=ys)
    ref = CarliniL2Method(
        est, learning_rate=0.1, binary_search_steps=3, max_iter=10, initial_const=1.0,
        batch_size=6, verbose=False,
    ).generate(xs)  # fmt: skip
    fooled = clf.predict(ref) != ys
    print(
        f"parity C&W (ours 5x60, ART 3x10), success / median L2: advgui "
        f"{cw.success.mean():.2f} / {np.median(cw.l2[cw.success]):.3f}, ART {fooled.mean():.2f}"
        f" / {np.median(l2(ref, xs)[fooled]):.3f}"
    )
    xs, ys = x[:40], y[:40]
    goals = (ys + 1) % 10
    ref = SaliencyMapMethod(est, theta=1.0, gamma=0.1, batch_size=40, verbose=False).generate(
        xs, y=np.eye(10)[goals]
    )
    ref_share = (np.abs(ref - xs).reshape(len(xs), -1) > 1e-6).mean()
    print(f"parity JSMA gamma 0.1, ART: success {(clf.predict(ref) == goals).mean():.3f}, "
          f"pixel share {ref_share:.4f}")  # fmt: skip
    for saliency in ("goal", "pairs"):
        res = make_attack("jsma", max_share=0.1, saliency=saliency)(clf, xs, labels=ys, goals=goals)
        print(f"parity JSMA gamma 0.1, advgui saliency={saliency}: success "
              f"{res.success.mean():.3f}, pixel share {(res.l0 / 784).mean():.4f}")  # fmt: skip


def _pgd_side_by_side(args, clf, x, y) -> tuple[float, float, float]:
    """Best images/s of advgui, ART and torchattacks over the batch sizes (0: not run)."""
    pgd = make_attack("pgd", eps=0.3, step_size=0.01, steps=40, restarts=1)
    run_batch(pgd, clf, x[:8], y[:8])  # warm up (tracing)
    step_flops = harness.attack_step_flops(clf.logits_model)
    twin = None
    if not args.skip_torch:
        torch, why = peers.torch_or_reason()
        try:
            import torchattacks  # noqa: F401
        except Exception as err:
            why = why or f"torchattacks not importable ({err}); {peers.INSTALL_HINT}"
        if why:
            print(f"torchattacks: {why}")
        else:
            twin = peers.torch_twin(clf.logits_model)
            diff = peers.check_same_logits(clf.logits_model, twin, x)
            print(f"PyTorch twin of the CNN (Keras weights copied): max |logit difference| "
                  f"{diff:.1e} on {len(x)} images (<= {peers.LOGIT_TOLERANCE:g}); torch "
                  f"{torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    best = {"advgui": 0.0, "ART": 0.0, "torchattacks": 0.0}
    shares = {}
    probe = harness.MatmulProbe()
    for bs in [b for b in BATCH_SIZES if b <= len(x)]:
        fns = {
            "matmul": probe,
            "advgui": lambda bs=bs: run_batch(pgd, clf, x, y, batch_size=bs).x_adv,
        }
        if not args.skip_art:
            art = art_pgd(clf, bs)
            art(x[:8], y[:8])  # warm up (tracing)
            fns["ART"] = lambda art=art: art(x, y)
        if twin is not None:
            fns["torchattacks"] = lambda bs=bs: peers.torchattacks_pgd(twin, x, y, bs)
        timings = harness.side_by_side(fns, repeats=args.repeats, warmup=0)
        probe_tm = timings.pop("matmul")
        rate = probe.gflops(probe_tm.median)
        for name, tm in timings.items():
            ips = len(x) / tm.median
            achieved = ips * 40 * step_flops / 1e9
            work = len(x) * 40 * step_flops
            paired = harness.paired_share(work, tm, probe, probe_tm, cpu=False)
            per_cpu = harness.paired_share(work, tm, probe, probe_tm, cpu=True)
            if ips > best[name]:
                best[name] = ips
                shares[name] = (paired, per_cpu)
            acc = clf.accuracy(tm.result, y)
            print(f"{name} PGD-40, batch {bs}: {ips:.1f} images/s (median of {len(tm.seconds)}: "
                  f"{tm.spread()}), robust accuracy {acc:.4f}, {achieved:.1f} GFLOP/s; share of "
                  f"the matmul rate {100 * per_cpu:.0f}% per CPU second, {100 * paired:.0f}% "
                  f"per wall second (matmul {rate:.0f} GFLOP/s wall)", flush=True)  # fmt: skip
    ours = best["advgui"]
    print(f"({step_flops / 1e6:.1f} MFLOP per image-step)")
    if best["torchattacks"]:
        print(f"advgui/torchattacks speed ratio, best batch against best batch: "
              f"{ours / best['torchattacks']:.2f}x (goal >= 1.5x)")  # fmt: skip
    if best["ART"]:
        print(f"advgui/ART speed ratio, best batch against best batch: "
              f"{ours / best['ART']:.2f}x (goal >= 3x)")  # fmt: skip
    wall, per_cpu = shares["advgui"]
    print(f"advgui PGD-40 at its best batch: {100 * per_cpu:.0f}% of the matmul rate measured "
          f"beside it, per CPU second ({100 * wall:.0f}% per wall second; "
          "goal >= 50%)")  # fmt: skip
    return ours, best["ART"], best["torchattacks"]


def mixed_pgd(args: argparse.Namespace, clf, x: np.ndarray, y: np.ndarray) -> None:
    """PGD-40 at float32 and at --precision mixed, alternating, at the first batch size."""
    pgd = make_attack("pgd", eps=0.3, step_size=0.01, steps=40, restarts=1)
    bs = BATCH_SIZES[0]

    def run(prec: str):
        return precision.run_attack(pgd, clf, x, y, precision=prec, batch_size=bs)

    timings = harness.side_by_side(
        {"float32": lambda: run("float32"), "mixed": lambda: run("mixed")},
        repeats=args.repeats,
    )
    full, mixed = timings["float32"], timings["mixed"]
    ratio = harness.median(
        a / b for a, b in zip(full.seconds, mixed.seconds, strict=True)
    )  # speed-up of mixed per round
    check = mixed.result[1]
    same = (mixed.result[0].pred_after == full.result[0].pred_after).mean()
    print(
        f"advgui PGD-40 --precision mixed ({check['policy']}), batch {bs}: "
        f"{len(x) / mixed.median:.1f} images/s vs float32 {len(x) / full.median:.1f}: "
        f"{ratio:.2f}x float32's speed (median of {args.repeats} paired rounds); robust "
        f"accuracy re-checked in float32 {mixed.result[0].summary()['robust_accuracy']:.4f} "
        f"(float32 attack {full.result[0].summary()['robust_accuracy']:.4f}); "
        f"{check['flips']} image(s) flip between precisions; "
        f"{100 * same:.1f}% of predictions equal to the float32 attack's"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=".keras CNN (default: train one briefly)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="passes per figure (median)")
    parser.add_argument("--cw-n", type=int, default=100)
    parser.add_argument("--skip-art", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="500 images, one pass each, C&W on 20 images"
    )
    parser.add_argument(
        "--parity", action="store_true", help="only print ART/advgui results at the test settings"
    )
    harness.add_device_option(parser)
    parser.add_argument(
        "--precision", choices=precision.PRECISIONS, default="float32",
        help="mixed: also time PGD-40 under this device's mixed policy (ratio to float32)",
    )  # fmt: skip
    args = parser.parse_args()
    harness.use_device(args.device)
    if args.precision == "mixed":
        precision.policy("mixed")  # refused here (no bf16, no GPU) before any work
    if args.quick:
        args.n, args.repeats, args.cw_n = min(args.n, 500), 1, min(args.cw_n, 20)
    harness.print_machine()
    mnist = harness.mnist()
    clf = harness.load_or_bench_cnn(args.model, mnist)
    if args.parity:
        parity(clf, mnist)
        return
    x, y = mnist.x_test[: args.n], mnist.y_test[: args.n]
    print(f"model {clf.name}: clean accuracy {clf.accuracy(x, y):.4f} on {len(x)} test images")
    ours, art, _ = _pgd_side_by_side(args, clf, x, y)
    step_flops = harness.attack_step_flops(clf.logits_model)

    # Opt-in bfloat16 gradients (float32 projection and judging), at the first batch size.
    chosen = tuning.settings()
    if not chosen.bf16_available:
        print(f"advgui PGD-40 bfloat16: not offered on this CPU ({chosen.reasons['bf16']})")
    else:
        fast = make_attack(
            "pgd", eps=0.3, step_size=0.01, steps=40, restarts=1, precision="bfloat16"
        )
        run_batch(fast, clf, x[:8], y[:8])  # warm up (tracing)
        probe = harness.MatmulProbe()
        bf16 = lambda: run_batch(fast, clf, x, y, batch_size=BATCH_SIZES[0])  # noqa: E731
        timings = harness.side_by_side(
            {"matmul": probe, "bf16": bf16},
            repeats=args.repeats,
            warmup=0,
        )
        tm = timings["bf16"]
        res = tm.result
        ips = len(x) / tm.median
        per_cpu = harness.paired_share(
            len(x) * 40 * step_flops, tm, probe, timings["matmul"], cpu=True
        )
        print(
            f"advgui PGD-40 precision={res.extra['precision']}, batch {BATCH_SIZES[0]}: "
            f"{ips:.1f} images/s, robust accuracy {res.summary()['robust_accuracy']:.4f}, "
            f"{100 * per_cpu:.0f}% of the float32 matmul rate per CPU second; "
            f"{ips / ours:.2f}x advgui's float32" + (f", {ips / art:.2f}x ART's" if art else "")
        )
    if args.precision == "mixed":
        mixed_pgd(args, clf, x, y)
    fb_out = foolbox_pgd(clf, x, y)
    if isinstance(fb_out, str):
        print(f"Foolbox 3.3.4: {fb_out}")
    else:
        print(
            f"Foolbox 3.3.4 PGD-40: {fb_out[0]:.1f} images/s, robust accuracy {fb_out[1]:.4f}; "
            f"advgui/Foolbox speed ratio {ours / fb_out[0]:.2f}x"
        )

    cw = make_attack("cw", steps=100, search_steps=9)
    xc, yc = x[: args.cw_n], y[: args.cw_n]
    run_batch(cw, clf, xc[:4], yc[:4])  # warm up (tracing)
    res = run_batch(cw, clf, xc, yc, batch_size=len(xc))
    s = res.summary()
    print(
        f"advgui C&W L2 9x100 on {len(xc)} images: {res.seconds:.1f} s (target <= 60 s for "
        f"100), success {s['success_rate']:.3f}, median L2 {s['median_l2']:.3f}, "
        f"mean steps {res.steps.mean():.0f} of 900 (early abort on)"
    )
    print(harness.interpret())


if __name__ == "__main__":
    main()

"""AutoAttack and APGD against ART 1.20 on the same adversarially trained CNN and images.

Targets (issue 16):
- AutoAttack ``standard`` at L-inf 0.3 on 1,000 test images of advgui's PGD-AT CNN: at most
  5 minutes on this 2-core CPU, at least 5x ART 1.20's AutoAttack (its default ensemble:
  APGD-CE and APGD-DLR with 5 restarts, DeepFool, Square with 5 restarts of 5,000 queries) in
  images/s on the same model and images, and a robust accuracy no higher than ART's;
- APGD-CE, 100 iterations: at least 3x ART's ``AutoProjectedGradientDescent`` images/s.

ART's AutoAttack is far slower, so it can run on the first ``--art-n`` of the images; advgui
then runs on that subset too, and the speed ratio and the robust accuracies compare the same
images. ART's AutoAttack gets a batch of all its images (faster for it than its default of
32). APGD runs on all images on both sides, ART at several batch sizes (its best counts),
with the paper's first step 2 eps and one random start, as ours.

The model: ``--model`` (a PGD-AT CNN, e.g. from ``advgui defend --defense pgd-at``), else one
trained here with the app's defaults (``advgui.core.defenses``, about 10-15 min on this CPU),
kept at ``--save`` if given. Figures are printed, never asserted.

    .venv/bin/python benchmarks/bench_autoattack.py --model pgdat.keras [--n 1000]
        [--art-n 1000] [--part all|autoattack|apgd] [--skip-art]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

# TensorFlow's default thread pools for both sides (see bench_strong_attacks.py).
os.environ.setdefault("TF_OVERRIDE_GLOBAL_THREADPOOL", "0")

import harness

from advgui.core import models
from advgui.core.attacks import make_attack
from advgui.core.attacks.batch import run_batch
from advgui.core.progress import Progress

EPS = 0.3
#: ART's default batch (32) and larger ones.
ART_BATCHES = (32, 256, 1000)


def pgd_at_model(mnist, save: str | None) -> models.Classifier:
    from advgui.core.defenses import DefenseConfig, train_defended

    cfg = DefenseConfig.for_method("pgd-at").validate()
    print(f"training the app's default PGD-AT CNN ({cfg.arch}, {cfg.epochs} epochs)...")
    t0 = time.perf_counter()
    clf = train_defended(cfg, mnist).classifier
    print(f"  trained in {time.perf_counter() - t0:.0f} s")
    if save:
        models.save_model(clf, save)
    return clf


class Ticker:
    """A progress line every 30 s, so a long run shows it is alive."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, update: Progress) -> None:
        if time.perf_counter() - self.last > 30:
            self.last = time.perf_counter()
            print(f"    {100 * update.fraction:.0f}% {update.message}", flush=True)


def apgd(clf, x, y, art_n: int, skip_art: bool) -> None:
    attack = make_attack("apgd-ce", eps=EPS, steps=100)
    attack(clf, x[:8], labels=y[:8])  # tracing, as ART's warm-up below
    res = run_batch(attack, clf, x, y, batch_size=len(x))
    ours = res.summary()
    print(f"advgui APGD-CE-100: {ours['images_per_second']:.1f} images/s ({res.seconds:.1f} s), "
          f"robust accuracy {ours['robust_accuracy']:.4f}")  # fmt: skip
    if skip_art:
        return
    from art.attacks.evasion import AutoProjectedGradientDescent

    xs, ys = x[:art_n], y[:art_n]
    best = 0.0
    for batch in ART_BATCHES:  # ART at its default batch and larger ones: its best counts
        ref = AutoProjectedGradientDescent(
            harness.art_classifier(clf), norm=np.inf, eps=EPS, eps_step=2 * EPS, max_iter=100,
            nb_random_init=1, batch_size=min(batch, len(xs)), loss_type="cross_entropy",
            verbose=False,
        )  # fmt: skip
        ref.generate(x[:8], y=y[:8])
        np.random.seed(0)
        t0 = time.perf_counter()
        adv = ref.generate(xs, y=ys)
        seconds = time.perf_counter() - t0
        art_ips = len(xs) / seconds
        best = max(best, art_ips)
        print(f"ART 1.20 APGD-CE-100, batch {min(batch, len(xs))}: {art_ips:.1f} images/s "
              f"({seconds:.1f} s), robust accuracy {clf.accuracy(adv, ys):.4f}")  # fmt: skip
    print(f"APGD-CE speed ratio advgui/ART, best against best: "
          f"{ours['images_per_second'] / best:.1f}x (target >= 3x)")  # fmt: skip


def run_autoattack(clf, x, y) -> tuple[float, object]:
    attack = make_attack("autoattack", eps=EPS, version="standard")
    t0 = time.perf_counter()
    res = run_batch(attack, clf, x, y, batch_size=len(x), progress=Ticker())
    return time.perf_counter() - t0, res


def autoattack(clf, x, y, art_n: int, skip_art: bool) -> None:
    seconds, res = run_autoattack(clf, x, y)
    robust = res.summary()["robust_accuracy"]
    print(f"advgui AutoAttack standard: {seconds:.0f} s for {len(x)} images "
          f"({len(x) / seconds:.2f} images/s; target <= 300 s for 1,000), robust accuracy "
          f"{robust:.4f}")  # fmt: skip
    print(f"  clean {int((res.pred_before == y).sum())} of {len(x)}")
    for rec in res.details.cascade:
        print(f"  {rec['attack']:8} ({rec['access']}): ran on {rec['attacked']}, broke "
              f"{rec['broken']}, {rec['seconds']:.0f} s, {rec['queries']} queries")  # fmt: skip
    for flag in res.details.flags or []:
        print(f"  flag {flag['name']}: {flag['message']}")
    if skip_art:
        return
    from art.attacks.evasion import AutoAttack

    xs, ys = x[:art_n], y[:art_n]
    if art_n < len(x):  # the speed ratio on the same images
        seconds, res = run_autoattack(clf, xs, ys)
        print(f"advgui AutoAttack standard on the first {art_n}: {seconds:.0f} s, robust "
              f"accuracy {res.summary()['robust_accuracy']:.4f}")  # fmt: skip
    ours_here = float(np.mean(res.pred_after[:art_n] == ys))
    ref = AutoAttack(harness.art_classifier(clf), norm=np.inf, eps=EPS, batch_size=len(xs))
    print(f"ART 1.20 AutoAttack (default ensemble) on {len(xs)} images...", flush=True)
    t0 = time.perf_counter()
    adv = ref.generate(xs, y=ys)
    art_s = time.perf_counter() - t0
    art_robust = clf.accuracy(adv, ys)
    print(
        f"ART 1.20 AutoAttack: {art_s:.0f} s for {len(xs)} images "
        f"({len(xs) / art_s:.3f} images/s), robust accuracy {art_robust:.4f} "
        f"(advgui on the same {len(xs)}: {ours_here:.4f}; target: not higher than ART's)"
    )
    print(f"AutoAttack speed ratio advgui/ART on the same {len(xs)} images: "
          f"{art_s / seconds:.1f}x (target >= 5x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a PGD-AT .keras model (default: train the app's)")
    parser.add_argument("--save", help="where to keep the model trained here")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--art-n", type=int, help="images for ART (default: all --n)")
    parser.add_argument("--part", choices=("all", "autoattack", "apgd"), default="all")
    parser.add_argument("--skip-art", action="store_true")
    harness.add_device_option(parser)
    args = parser.parse_args()
    harness.use_device(args.device)
    mnist = harness.mnist()
    harness.print_machine()
    clf = models.load_model(args.model) if args.model else pgd_at_model(mnist, args.save)
    x, y = mnist.x_test[: args.n], mnist.y_test[: args.n]
    art_n = min(args.art_n or args.n, args.n)
    print(f"model {clf.name}: clean accuracy {clf.accuracy(x, y):.4f} on the first {len(x)} "
          f"test images; L-inf eps {EPS}")  # fmt: skip
    if args.part in ("all", "apgd"):
        apgd(clf, x, y, len(x), args.skip_art)  # ART's APGD is fast enough for all of them
    if args.part in ("all", "autoattack"):
        autoattack(clf, x, y, art_n, args.skip_art)


if __name__ == "__main__":
    main()

"""``advgui selftest``: prove an installation works, headless and offline.

Lab machines get advgui as a frozen bundle; this is what the packaging smoke test runs inside
it (and what a lab admin can run after installing). It goes through the whole pipeline once on
real data: MNIST (from the bundle when there is one), a tiny model trained for a few batches,
the CPU-specific speed choices (measured at first use) with their reasons, FGSM, a PNG export
that is read back and re-classified. Each step checks an outcome that a broken install
(missing kernels, data or image codecs) could not produce; exit 0 only if all hold, 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from advgui import __version__
from advgui.commands.common import ProgressBar, finite_float, positive_int, write_json
from advgui.core.errors import AdvguiError

#: Name of the bundled dataset folder, inside the PyInstaller bundle (``sys._MEIPASS``).
BUNDLE_MNIST = "mnist"
#: Below this test accuracy after the few training batches, training is broken (chance: 0.1).
MIN_TRAIN_ACCURACY = 0.5


class SelftestFailed(AdvguiError):
    """A step ran but its outcome is wrong: the installation is broken."""


def bundle_root() -> Path | None:
    """The frozen app's data folder (PyInstaller's ``sys._MEIPASS``), None in a checkout."""
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        return Path(meipass)
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return None


def bundled_mnist_dir(root: Path | None = None) -> Path | None:
    """The MNIST folder shipped inside the bundle, if the build bundled one."""
    root = root if root is not None else bundle_root()
    if root is None:
        return None
    for folder in (root / BUNDLE_MNIST, root.parent / BUNDLE_MNIST):
        if any((folder / f"train-images-idx3-ubyte{ext}").is_file() for ext in ("", ".gz")):
            return folder
    return None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "selftest",
        help="check this installation offline: load the dataset, train briefly, attack, "
        "export a PNG",
        description="Run the whole pipeline once on the real dataset (MNIST: the bundled copy "
        "in a packaged app, else --data, $ADVGUI_DATA or the cache; Fashion-MNIST: --data, "
        "$ADVGUI_FASHION_DATA, the cache or the Debian package's folder; never the network) and "
        "check each result.",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder for the exported PNG and selftest.json (default: <results>/selftest)",
    )
    p.add_argument("--arch", choices=("mlp", "cnn"), default="mlp", help="model (default mlp)")
    p.add_argument("--batches", type=positive_int, default=10, help="training batches (default 10)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    p.add_argument("--eps", type=finite_float, default=0.2, help="FGSM epsilon (default 0.2)")
    p.add_argument("--attack-images", type=positive_int, default=200, help="default 200")
    p.set_defaults(func=cmd_selftest)


def cmd_selftest(args: argparse.Namespace) -> int:
    dataset = getattr(args, "dataset", None) or "mnist"
    out = Path(args.out) if args.out else _default_out(dataset)
    report = run_selftest(
        out,
        data=args.data,
        dataset=dataset,
        arch=args.arch,
        batches=args.batches,
        batch_size=args.batch_size,
        eps=args.eps,
        n_attack=args.attack_images,
    )
    return 0 if report["passed"] else 1


def _default_out(dataset: str = "mnist") -> Path:
    from advgui.core import paths

    return paths.results_dir(dataset) / "selftest"


def _say(text: str) -> None:
    print(text, flush=True)


def run_selftest(
    out: Path | str,
    *,
    data: str | None = None,
    arch: str = "mlp",
    batches: int = 10,
    batch_size: int = 64,
    eps: float = 0.2,
    n_attack: int = 200,
    dataset: str = "mnist",
) -> dict[str, Any]:
    """Run every step on ``dataset``, print one line each, write ``out/selftest.json``; return
    the report.

    A user error (no dataset, unwritable ``out``) raises :class:`AdvguiError`; a step whose
    outcome is wrong is reported as failed (``passed`` false), after writing the report.
    """
    from advgui.core.data import get_spec
    from advgui.core.params import check_number as check_param

    spec = get_spec(dataset)
    eps = check_param("eps", eps, lo=0.01, hi=1.0)
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AdvguiError(f"cannot create {out}: {err.strerror or err}") from err
    started = time.perf_counter()
    report: dict[str, Any] = {
        "version": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "executable": sys.executable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dataset": spec.name,
        "steps": {},
        "passed": False,
    }
    _say(
        f"selftest: advgui {__version__}, "
        f"{'frozen app ' + str(bundle_root()) if report['frozen'] else 'from source'}, "
        f"Python {report['python']} on {platform.system()} {platform.machine()}"
    )
    try:
        mnist = _step_data(report, data, spec)
        clf = _step_train(report, mnist, arch=arch, batches=batches, batch_size=batch_size)
        _step_tuning(report)
        result = _step_attack(report, clf, mnist, eps=eps, n=n_attack)
        _step_export(report, clf, result, out)
        report["passed"] = True
    except SelftestFailed as err:
        report["error"] = str(err)
        _say(f"selftest: FAILED: {err}")
    report["seconds"] = round(time.perf_counter() - started, 3)
    write_json(out / "selftest.json", report)
    if report["passed"]:
        _say(f"selftest: PASSED in {report['seconds']:.1f} s (report: {out / 'selftest.json'})")
    return report


def _step_data(report: dict[str, Any], data: str | None, spec: Any = None) -> Any:
    from advgui.core.data import MNIST, load_dataset

    spec = spec or MNIST
    t0 = time.perf_counter()
    bundled = bundled_mnist_dir() if spec is MNIST else None  # the bundle holds MNIST only
    if data is not None:
        mnist, origin = load_dataset(spec, data), f"--data {data}"
    elif bundled is not None:
        mnist, origin = load_dataset(spec, bundled), f"bundle {bundled}"
    else:  # offline on purpose: a self-test must not depend on the network
        mnist = load_dataset(spec, None, use_download=False, use_npm=False)
        origin = mnist.source
    counts = (len(mnist.y_train), len(mnist.y_test))
    if counts != (60000, 10000):
        raise SelftestFailed(f"{spec.title} has {counts[0]} training and {counts[1]} test images")
    seconds = time.perf_counter() - t0
    report["steps"]["data"] = {
        "dataset": spec.name,
        "source": origin,
        "train": counts[0],
        "test": counts[1],
        "sha256": mnist.sha256,
        "seconds": round(seconds, 3),
    }
    _say(
        f"  data: {spec.title}, {counts[0]} train / {counts[1]} test images, checksums verified, "
        f"from {origin} ({seconds:.1f} s)"
    )
    return mnist


def _step_train(
    report: dict[str, Any], mnist: Any, *, arch: str, batches: int, batch_size: int
) -> Any:
    from advgui.core import training

    t0 = time.perf_counter()
    cfg = training.TrainConfig.for_arch(
        arch, epochs=1, batch_size=batch_size, n_train=max(100, batches * batch_size), n_val=0
    )
    bar = ProgressBar()
    try:
        result = training.train(cfg, mnist, progress=bar)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    acc = float(result.test_accuracy)
    report["steps"]["train"] = {
        "arch": arch,
        "batches": batches,
        "batch_size": batch_size,
        "test_accuracy": acc,
        "seconds": round(seconds, 3),
    }
    _say(
        f"  train: {arch}, {batches} batches of {batch_size} images in {seconds:.1f} s, "
        f"test accuracy {acc:.3f} on 10000 images"
    )
    if result.cancelled:
        raise SelftestFailed("training stopped early")
    if not acc >= MIN_TRAIN_ACCURACY:
        raise SelftestFailed(
            f"test accuracy {acc:.3f} after training is below "
            f"{MIN_TRAIN_ACCURACY} (chance is 0.1): TensorFlow is broken"
        )
    return result.classifier


def _step_tuning(report: dict[str, Any]) -> None:
    """Show the CPU-specific choices (core/tuning.py) and why: figures from a lab machine are
    only comparable with another's once both are known."""
    from advgui.core import tuning

    t0 = time.perf_counter()
    chosen = tuning.settings()
    report["device"] = chosen.device
    report["tuning"] = {**chosen.to_dict(), "seconds": round(time.perf_counter() - t0, 3)}
    for line in chosen.lines():
        _say(f"  tuning: {line}")


def _step_attack(report: dict[str, Any], clf: Any, mnist: Any, *, eps: float, n: int) -> Any:
    import numpy as np

    from advgui.core.attacks import make_attack

    t0 = time.perf_counter()
    x, y = mnist.x_test[:n], mnist.y_test[:n]
    result = make_attack("fgsm", eps=eps)(clf, x, labels=y)
    seconds = time.perf_counter() - t0
    summary = result.summary()
    clean, robust = summary["clean_accuracy"], summary["robust_accuracy"]
    linf = float(np.abs(result.x_adv - x).max())
    report["steps"]["attack"] = {
        "method": "fgsm",
        "eps": eps,
        "images": len(x),
        "clean_accuracy": clean,
        "robust_accuracy": robust,
        "success_rate": summary["success_rate"],
        "linf": linf,
        "seconds": round(seconds, 3),
    }
    _say(
        f"  attack: FGSM eps={eps:g} on {len(x)} test images: accuracy {clean:.3f} -> "
        f"{robust:.3f}, max |delta| {linf:.3f} ({seconds:.1f} s)"
    )
    if linf > eps + 1e-5 or result.x_adv.min() < 0 or result.x_adv.max() > 1:
        raise SelftestFailed(f"FGSM left the eps ball or [0, 1] (max |delta| {linf:.4f})")
    if not robust <= 0.5 * clean:
        raise SelftestFailed(
            f"FGSM barely changed the accuracy ({clean:.3f} -> {robust:.3f}): gradients are broken"
        )
    # PGD runs a compiled multi-step loop (AutoGraph): the part a frozen app most easily breaks.
    t1 = time.perf_counter()
    m = min(len(x), 50)
    pgd = make_attack("pgd", eps=eps, step_size=eps / 4, steps=10)(clf, x[:m], labels=y[:m])
    pgd_summary = pgd.summary()
    pgd_linf = float(np.abs(pgd.x_adv - x[:m]).max())
    report["steps"]["attack"]["pgd"] = {
        "steps": 10,
        "images": m,
        "clean_accuracy": pgd_summary["clean_accuracy"],
        "robust_accuracy": pgd_summary["robust_accuracy"],
        "linf": pgd_linf,
        "seconds": round(time.perf_counter() - t1, 3),
    }
    _say(
        f"  attack: PGD eps={eps:g}, 10 steps in one compiled loop, on {m} images: accuracy "
        f"{pgd_summary['clean_accuracy']:.3f} -> {pgd_summary['robust_accuracy']:.3f} "
        f"({time.perf_counter() - t1:.1f} s)"
    )
    if pgd_linf > eps + 1e-5 or not (
        pgd_summary["robust_accuracy"] <= 0.5 * pgd_summary["clean_accuracy"]
    ):
        raise SelftestFailed(
            f"PGD failed (accuracy {pgd_summary['clean_accuracy']:.3f} -> "
            f"{pgd_summary['robust_accuracy']:.3f}, max |delta| {pgd_linf:.4f})"
        )
    return result


def _step_export(report: dict[str, Any], clf: Any, result: Any, out: Path) -> None:
    import numpy as np

    from advgui.core.export import export_image
    from advgui.core.images import open_image

    t0 = time.perf_counter()
    hits = np.flatnonzero(result.success)
    i = int(hits[0]) if len(hits) else 0
    png = out / "selftest_fgsm.png"
    spec = trained_on(clf)
    record = export_image(result, i, clf, png, index=i, class_names=spec.class_names)
    # Read back independently of the exporter: the exact 8-bit pixels and the recorded label.
    with open_image(png) as img:
        mode, size = img.mode, img.size
        pixels = np.asarray(img)
    expected = np.round(np.clip(result.x_adv[i].reshape(28, 28), 0, 1) * 255).astype(np.uint8)
    if (mode, size) != ("L", (28, 28)) or not np.array_equal(pixels, expected):
        raise SelftestFailed(f"{png} holds a {mode} {size} image that differs from the attack's")
    pred = int(clf.predict((pixels.astype(np.float32) / 255.0)[None, :, :, None])[0])
    sidecar = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
    if pred != sidecar.get("png_pred") or pred != record.get("png_pred"):
        raise SelftestFailed(
            f"{png} is classified {pred}, its sidecar says {sidecar.get('png_pred')}"
        )
    seconds = time.perf_counter() - t0
    files = sorted(
        p.name for p in out.iterdir() if p.suffix in (".png", ".json") and p.name != "selftest.json"
    )
    report["steps"]["export"] = {
        "png": str(png),
        "files": files,
        "label": int(result.labels[i]),
        "label_name": spec.class_name(int(result.labels[i])),
        "png_pred": pred,
        "png_pred_name": spec.class_name(pred),
        "seconds": round(seconds, 3),
    }
    _say(
        f"  export: {png.name} (28x28, 8-bit) read back with Pillow, pixels exact; "
        f"{'digit' if spec.digits else 'class'} {spec.label(int(result.labels[i]))} now "
        f"classified {spec.label(pred)}, as its sidecar records "
        f"({', '.join(files)})"
    )


def trained_on(clf: Any) -> Any:
    """The spec of the dataset ``clf`` was trained on (MNIST when it records none)."""
    from advgui.core.data import MNIST, model_dataset

    return model_dataset(clf.meta) or MNIST


def frozen_data_default() -> None:
    """In a bundle with MNIST, make it the dataset unless the user named one (offline labs)."""
    folder = bundled_mnist_dir()
    if folder is not None and not os.environ.get("ADVGUI_DATA"):
        os.environ["ADVGUI_DATA"] = str(folder)

"""What the frozen app leaves out, in one place the spec and the tests both read.

Plain Python with no PyInstaller import, so ``tests/project/test_packaging.py`` can check that
nothing listed here is imported while the app trains, attacks, exports and shows its window: a
module that is excluded but needed would only fail on a lab machine.

TensorFlow's own ``__init__`` imports nearly all of it (tf.lite, the profiler, dtensor...), so
most of TensorFlow cannot be dropped; what can is listed with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path

#: Qt bindings advgui never imports (the window is QtWidgets; pyqtgraph also uses QtSvg,
#: QtOpenGL(Widgets) and QtTest, which stay). Excluding a binding also drops its Qt libraries,
#: plugins and, for QtQml/QtQuick, the whole ``qml/`` tree.
QT_EXCLUDES: tuple[str, ...] = (
    "PySide6.QtQml",
    "PySide6.QtQmlFeatures",
    "PySide6.QtQuick",
    "PySide6.QtQuickControls2",
    "PySide6.QtQuickTest",
    "PySide6.QtQuickWidgets",
    "PySide6.QtLabsStyleKit",
    "PySide6.QtDesigner",
    "PySide6.QtHelp",
    "PySide6.QtUiTools",
    "PySide6.QtSql",
    "PySide6.QtNetwork",
    "PySide6.QtXml",
    "PySide6.QtConcurrent",
    "PySide6.QtDBus",
    "PySide6.QtPrintSupport",
    # Not in PySide6-Essentials, listed so that an Addons install does not drag them in.
    "PySide6.QtWebEngineCore",
    "PySide6.QtWebEngineWidgets",
    "PySide6.QtWebEngineQuick",
    "PySide6.QtWebChannel",
    "PySide6.QtWebSockets",
    "PySide6.Qt3DCore",
    "PySide6.Qt3DRender",
    "PySide6.Qt3DExtras",
    "PySide6.QtMultimedia",
    "PySide6.QtMultimediaWidgets",
    "PySide6.QtCharts",
    "PySide6.QtDataVisualization",
    "PySide6.QtGraphs",
    "PySide6.QtPdf",
    "PySide6.QtPdfWidgets",
    "PySide6.QtBluetooth",
    "PySide6.QtPositioning",
    "PySide6.QtLocation",
    "PySide6.QtSerialPort",
    "PySide6.QtSensors",
    "PySide6.QtTextToSpeech",
    "PySide6.QtRemoteObjects",
    "PySide6.QtScxml",
    "PySide6.QtStateMachine",
    "PySide6.QtHttpServer",
    "PySide6.QtSpatialAudio",
)

#: Python packages the app does not use at run time; most come in through optional imports.
PY_EXCLUDES: tuple[str, ...] = (
    "tkinter",
    "tensorboard",  # TensorBoard callback only
    "grpc",  # TensorFlow's distributed runtime; never imported by local training (19 MB)
    "jax",
    "torch",
    "openvino",
    "keras.src.backend.jax",  # advgui runs Keras on the TensorFlow backend only
    "keras.src.backend.torch",
    "keras.src.backend.openvino",
    "pyqtgraph.opengl",  # 3D views; advgui's plots are 2D
    "pyqtgraph.examples",
    "pyqtgraph.jupyter",
    "IPython",
    "matplotlib",
    "pandas",
    "pytest",
    "hypothesis",
    "PyInstaller",
    "setuptools",
    "pip",
    # TensorFlow parts whose extension modules `import tensorflow` and everything advgui does
    # (training, tf.function, gradients, .keras save/load) never load.
    "tensorflow.compiler.mlir.stablehlo",  # stablehlo_extension.so, 26 MB
    "tensorflow.compiler.tf2xla.ops._xla_ops",  # 20 MB, XLA op kernels for jit_compile
    "tensorflow.python.autograph.impl.testing",
)

EXCLUDES: tuple[str, ...] = QT_EXCLUDES + PY_EXCLUDES

#: Files dropped from the collected data and binaries, by destination path in the bundle.
DROP_PATTERNS: tuple[str, ...] = (
    "PySide6/Qt/translations/*",  # the UI is English only (14 MB of .qm files)
    "PySide6/Qt/qml/*",
    "PySide6/Qt/plugins/qmltooling/*",
    "PySide6/Qt/plugins/sqldrivers/*",
    "PySide6/Qt/plugins/designer/*",
    # GTK3 theme: needs GTK on the machine (not a Depends); Qt falls back to its own style.
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
    # ...and the GTK stack PyInstaller copied from the build machine for it alone (8 MB).
    "libatk-1.0.so*",
    "libcairo*.so*",
    "libpango*.so*",
    "libgdk_pixbuf-2.0.so*",
    "libpixman-1.so*",
    "libharfbuzz.so*",
    "libgraphite2.so*",
    "libthai.so*",
    "libdatrie.so*",
    "libfribidi.so*",
    "libgio-2.0.so*",
    "libgmodule-2.0.so*",
    "libgobject-2.0.so*",
    "libmount.so*",
    "libblkid.so*",
    "libselinux.so*",
    "libjpeg.so.62",
    "PySide6/Qt/metatypes/*",
    "PySide6/Qt/libexec/*",
    "tensorflow/include/*",  # C++ headers (the contrib hook already skips them)
    "tensorflow/xla_aot_runtime_src/*",
    "*.pyi",
)


#: Binaries whose symbol tables are stripped (``strip --strip-unneeded``: the dynamic symbols
#: stay). Not PyInstaller's ``strip=True``: that also strips the auditwheel-patched libraries in
#: ``numpy.libs`` and the like, which then fail to load ("ELF load command address/offset not
#: page-aligned"). TensorFlow's own libraries are not patched and carry ~250 MB of symbols.
STRIP_PATTERNS: tuple[str, ...] = ("tensorflow/*.so*",)


def is_excluded_module(name: str) -> bool:
    """True if ``name`` is, or lies inside, one of the excluded modules."""
    return any(name == ex or name.startswith(ex + ".") for ex in EXCLUDES)


def keep_file(dest: str) -> bool:
    """Whether a collected file (destination path inside the bundle) stays in it."""
    dest = dest.replace("\\", "/")
    return not any(fnmatch(dest, pattern) for pattern in DROP_PATTERNS)


def strip_binaries(binaries: list[tuple[str, str, str]], cache: Path) -> list[tuple[str, str, str]]:
    """PyInstaller TOC entries with the files matching :data:`STRIP_PATTERNS` replaced by
    stripped copies under ``cache`` (redone only when the original is newer)."""
    if shutil.which("strip") is None:
        raise SystemExit(
            "advgui.spec: `strip` not found; install binutils (apt-get install binutils)"
        )
    out = []
    for dest, src, typecode in binaries:
        norm = dest.replace("\\", "/")
        if any(fnmatch(norm, pattern) for pattern in STRIP_PATTERNS) and _is_elf(src):
            target = cache / norm
            if not target.is_file() or target.stat().st_mtime < os.stat(src).st_mtime:
                target.parent.mkdir(parents=True, exist_ok=True)
                part = target.with_name(target.name + ".part")
                subprocess.run(["strip", "--strip-unneeded", "-o", str(part), src], check=True)
                part.replace(target)
            src = str(target)
        out.append((dest, src, typecode))
    return out


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False

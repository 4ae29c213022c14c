"""Entry point of the frozen app (PyInstaller runs this file as ``__main__``)."""

from advgui.cli import main
from advgui.commands.selftest import frozen_data_default

frozen_data_default()  # a bundled MNIST is the default dataset: lab machines may be offline
raise SystemExit(main())

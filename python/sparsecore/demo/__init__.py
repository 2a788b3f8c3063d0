"""The end-to-end demo behind ``sparsecore demo`` (see :mod:`sparsecore.cli.demo`)."""

from .run import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]

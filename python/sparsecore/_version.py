"""The one place the version lives (read by pyproject.toml, CMakeLists.txt and sparsecore.__version__)."""

__version__ = "0.2.0"

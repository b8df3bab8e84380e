"""The package version (one home, imported without loading the package's heavy parts)."""

__version__ = "0.2.0"

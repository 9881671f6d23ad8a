"""A drop-in replacement for the NixOS test driver."""

from .cli import generate_driver_symbols, main

__all__ = ["main", "generate_driver_symbols"]

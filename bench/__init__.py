"""Benchmarks (``make bench``): measured on loopback against the emulator, never part of tests."""

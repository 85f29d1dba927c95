"""The conformance suite: AWS's documented event shapes, sent with the raw SDK to the emulator.

It must not import ``novakit.s2s`` (test_independence.py checks): see wire.py."""

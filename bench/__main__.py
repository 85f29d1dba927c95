"""``python -m bench [--quick]``: run the benchmarks and print what they measured."""

from __future__ import annotations

import argparse
import asyncio
import json

from . import core


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    args = parser.parse_args()
    print("core: CPU per audio event through the SDK, against the emulator in another process")
    print(json.dumps(asyncio.run(core.run(quick=args.quick)), indent=2))


if __name__ == "__main__":
    main()

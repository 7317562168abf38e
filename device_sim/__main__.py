"""`python -m device_sim sim|check|goldens`: the simulator's data folder run as a program.

A consumer of the library, nothing more: `sim` and `check` are `portrait sim` and `portrait check`
(toolchain/cli.py), `goldens` is `python -m toolchain.device.goldens`. The simulator itself lives in
toolchain/sim/; this package holds its sample sequences and the script that generates them.
"""

from __future__ import annotations

import sys

from toolchain import cli
from toolchain.device import goldens

USAGE = "usage: python -m device_sim {sim,check,goldens} ...  (sim/check: see `portrait sim --help`)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["sim"], ["check"]):
        return cli.main(argv)
    if argv[:1] == ["goldens"]:
        return goldens.main(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

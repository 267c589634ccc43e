"""``make demo``: the simulator and the gateway together, readings flowing.

The simulator and the daemon are not there yet in this version; this says so
plainly instead of pretending.
"""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "metergw demo: not available yet.\n"
        "Working today: the DL/T 645 codec ('metergw decode HEX') and config validation\n"
        "('metergw check-config FILE'). The simulator, the polling daemon and the\n"
        "store-and-forward pipeline are being built; see README.md."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m envstore ...`` runs the bundled binary."""

import os
import sys

from . import find_binary


def main():
    exe = find_binary()
    if exe is None:
        sys.exit("envstore: the envstore binary is not installed next to this package")
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    main()

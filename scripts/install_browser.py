"""Set-up step: make sure Debian's Chromium is installed for the explorer's browser test.

``make setup`` runs this. The browser test drives ``/usr/bin/chromium`` with Playwright for
Python; Playwright never downloads a browser of its own. When Chromium is missing and we are
root, this installs the Debian packages ``chromium`` and ``chromium-driver`` with apt-get;
otherwise it says what to run and exits 0 (the browser test then skips with that reason when
not root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
PACKAGES = ("chromium", "chromium-driver")


def main() -> int:
    if CHROMIUM.exists():
        print(f"install_browser: {CHROMIUM} is present.")
        return 0
    apt = shutil.which("apt-get")
    command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if apt is None or os.geteuid() != 0:
        why = "apt-get is not available" if apt is None else "this user is not root"
        print(f"install_browser: {CHROMIUM} is missing and {why}; install it with\n"
              f"    sudo {' '.join(command)}\n"
              "The explorer's browser test (pytest -m browser) is skipped until then.",
              file=sys.stderr)
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("install_browser: installing " + " ".join(PACKAGES) + " with apt-get ...")
    update = subprocess.run(["apt-get", "update"], env=env, check=False)
    install = subprocess.run(command, env=env, check=False)
    if update.returncode != 0 or install.returncode != 0 or not CHROMIUM.exists():
        print(f"install_browser: apt-get failed (update {update.returncode}, install "
              f"{install.returncode}); {CHROMIUM} is still missing. Run "
              f"'{' '.join(command)}' by hand.", file=sys.stderr)
        return 1
    print(f"install_browser: {CHROMIUM} installed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

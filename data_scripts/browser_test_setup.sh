#!/usr/bin/env bash
# Installs what tests/test_widgets_browser.py needs: Debian's Chromium (apt) and the Playwright Python
# package (pip, the CPU torch constraints). Playwright's own browser download (`playwright install`) is
# never used: the test drives /usr/bin/chromium through executable_path.
#
#   sudo bash data_scripts/browser_test_setup.sh          # from the repository root
#   PYTHON=/path/to/python bash data_scripts/browser_test_setup.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "Chromium is missing: run this script as root (it calls apt-get install chromium)" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
"$PYTHON" -m pip install -c constraints/cpu.txt playwright
"$PYTHON" -c "import playwright, jupyterlab, ipywidgets; print('playwright, jupyterlab and ipywidgets import')"
chromium --version

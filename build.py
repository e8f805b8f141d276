#!/usr/bin/env python
"""Build the gallery: ``python build.py --help`` lists the options."""

import sys

from gallery.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m deescalwild` is the `deescalwild` command."""

import sys

from deescalwild.cli import main

sys.exit(main())

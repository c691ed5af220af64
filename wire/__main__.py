"""`python -m wire` runs the sqlvec command line."""

import sys

from wire.cli import main

sys.exit(main())

"""`python -m sqlvec serve ...`: the same command line as the `sqlvec` script."""

import sys

from wire.cli import main  # the one permitted engine → wire import (see pyproject)

sys.exit(main())

"""`python -m loss_param_tracker report LOG_DIR`."""

import sys

from loss_param_tracker.report import main

sys.exit(main())

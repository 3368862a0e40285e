"""``python -m langgraph_feedit.testing``: serve the simulated server until SIGTERM or SIGINT."""

import sys

from langgraph_feedit.testing._cli import main

sys.exit(main())

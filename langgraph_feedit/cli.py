"""The ``feedit`` console script: the command line of :mod:`langgraph_feedit.commands`.

``python -m langgraph_feedit.cli`` runs it too (as ``accelerate launch -m`` needs a module).
"""

from __future__ import annotations

import sys

from langgraph_feedit.commands import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())

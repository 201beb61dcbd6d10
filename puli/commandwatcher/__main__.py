"""Entry point of ``python -m puli.commandwatcher <command dir>``."""
import sys

from puli.commandwatcher.main import main

sys.exit(main())

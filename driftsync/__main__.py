import sys

from driftsync.cli import main

sys.exit(main())

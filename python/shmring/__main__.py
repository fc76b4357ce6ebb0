"""``python3 -m shmring``: the ring inspector CLI (see ``shmring.cli``)."""
import sys

from .cli import main

sys.exit(main())

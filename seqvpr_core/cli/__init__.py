"""The ``seqvpr`` command-line tool: thin ``run(args)`` functions over the library."""

import time

STARTED = time.perf_counter()  # when the command started: reported times include start-up

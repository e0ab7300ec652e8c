"""The ``seqvpr`` command-line tool: thin ``run(args)`` functions over the library."""

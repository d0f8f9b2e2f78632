"""Developer tools that check the code base itself (``python -m benchmark.tools.import_graph``)."""

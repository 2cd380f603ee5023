"""The command line: ``carbonx`` (``main``), the demo, terminal displays and the market-data viewer."""

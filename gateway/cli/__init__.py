"""The command line: ``carbonx`` (``main``: the parser and its errors), by role: ``trading`` (a trader's commands
and the market-data view), ``auctions`` (primary auctions), ``operations`` (serve, demo, the operator's commands,
replay, the configuration checks), ``one_shot`` (logging a command on and off); the demo, terminal displays and
the market-data viewer beside them."""

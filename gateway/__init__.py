"""carbonx gateway: everything that touches the outside world (files, sockets, brokers, the terminal)."""

"""What an operator watches: /metrics in Prometheus's text format, /healthz and /readyz (docs/OPERATIONS.md).

``histogram`` is the plain histogram the request path and the journal's sync thread record into;
``collectors`` reads the running exchange's live objects when it is scraped; ``endpoint`` serves them over
HTTP from a thread of its own. Nothing is imported here, so that the pipeline can use ``histogram`` without
loading prometheus-client or the rest.
"""

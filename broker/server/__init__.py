"""The running broker: the ASGI app and everything that only exists while it serves.

What belongs here: the app and its routes, the precomputed discovery and JWKS documents, the key
ring (the running view of the keys on disk), minting and its HTTP endpoints, request parsing,
rate limits, the durable audit writer, metrics, JSON logs, request-size and slow-client limits,
the OpenAPI document and the self-check on the broker's own documents. The CLI never imports it.
"""

"""The ``test-broker`` commands: one module per command family, each a thin shell over one call.

What belongs here: option parsing, one-line errors with stable exit codes (``reports_errors``),
tables and ``--json`` output. Domain decisions live in the packages the commands call. Nothing
imports this package but the console script (broker/main.py), and it never imports the server.
"""

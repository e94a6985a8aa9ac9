"""Running the broker as a long-lived public issuer on one host: the files a host needs.

What belongs here: rendering the nginx TLS site (``nginx.py``) and anything else derived from the
config for the host (units, install), never talking to AWS or serving HTTP. The templates ship in
the package (``templates/``) so ``test-broker render nginx`` works from an installed wheel.
"""

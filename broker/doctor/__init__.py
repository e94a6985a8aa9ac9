"""Fetch and judge an issuer as AWS STS would, from outside: ``test-broker doctor``.

What belongs here: fetching discovery and JWKS the way STS does (bounded in time and size, never
aimed at internal addresses), the TLS chain and thumbprint checks, and the doctor that runs the
sts rules on what it fetched (and on a token or trust policy) to predict STS's answer.
"""

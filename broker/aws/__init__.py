"""Talking to AWS (or a local stand-in): the isolation proof and the IAM policies it relies on.

What belongs here: ``verify`` (assume the test role with a minted token, then show the own prefix
allowed and a foreign one denied), the diagnosis that explains a failed proof, and rendering the
trust, role and bucket policies from the config. boto3 is imported here and in broker.client
(a test run's own session), nowhere else.
"""

"""Talking to AWS (or a local stand-in): the isolation proof and the IAM policies it relies on.

What belongs here: ``verify`` (assume the test role with a minted token, then show the own prefix
allowed and a foreign one denied), the diagnosis that explains a failed proof, rendering the
trust, role and bucket policies from the config, ``reap`` (deleting expired run prefixes in
the test buckets, guarded so it can delete nothing else), and the bring-up of the test side of
an account (``aws plan | apply | template``: the desired state, the plan, applying it, the
CloudFormation rendering, and the account the clients talk to). boto3 is imported here and in
broker.client (a test run's own session), nowhere else.
"""

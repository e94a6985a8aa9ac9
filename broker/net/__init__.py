"""Bounded outbound fetches: where the broker may connect, and reading an answer within limits.

What belongs here: the address guard (only addresses the fetch's issuer could legitimately use),
one bounded download (a deadline for the whole transfer, a cap on the decoded body), and the TLS
trust for a fetch. Used by ``doctor`` (fetching as AWS STS does) and by the server (fetching a
trusted CI issuer's keys for token exchange); it knows nothing of either.
"""

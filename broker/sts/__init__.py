"""Pure AWS STS knowledge: what AssumeRoleWithWebIdentity accepts, with no I/O and no settings.

What belongs here: the rule catalogue (rule ids in STS's evaluation order, its error codes and
messages), the token rules and the issuer/discovery/JWKS rules, the OIDC well-known paths, and
trust-policy evaluation. Everything else in broker uses these to mint, check or explain tokens;
this package imports nothing of broker but ``broker.errors`` (import-linter, pyproject.toml).
"""

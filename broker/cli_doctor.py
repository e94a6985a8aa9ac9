"""``test-broker doctor``: would AWS STS accept this issuer, token or trust policy?"""

from __future__ import annotations

import click


@click.command()
def doctor() -> None:
    """Offline STS-conformance preflight (being built; see issue 6).

    \b
    Example:
      test-broker doctor --issuer https://oidc.example.com
    """
    raise click.UsageError("doctor is not implemented yet")

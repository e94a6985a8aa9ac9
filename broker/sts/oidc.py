"""Where an OIDC provider publishes its documents: the paths AWS STS fetches under the issuer."""

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks.json"

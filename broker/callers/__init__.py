"""Who may mint what: credentials, federation-proof sessions, scopes and the claims a caller gets.

What belongs here: issuing, verifying, rotating and revoking CI and personal secrets; the mock
federation-proof backend; the scope grammar and allowance patterns that keep callers apart; the
gate that turns a bearer into an allowed mint request; the claims and tags a caller's token
carries. Used by the server to mint and by the CLI to manage credentials.
"""

#!/usr/bin/env bash
# The upstream project's federation-proof sequence, as its scripts type it: curl + jq only.
set -euo pipefail
BROKER="${BROKER:?set BROKER to the broker URL}"

SESSION=$(curl -sf -X POST "$BROKER/session/create" \
  -H "Content-Type: application/json" \
  -d '{"auth_token":"federation-proof"}' | jq -r '.session')

JWT=$(curl -sf -X POST "$BROKER/v1/mint-oidc-jwt" \
  -H "Authorization: Bearer $SESSION" | jq -r '.jwt')

PAYLOAD=$(echo "$JWT" | cut -d. -f2 | tr '_-' '/+')
while [ $(( ${#PAYLOAD} % 4 )) -ne 0 ]; do PAYLOAD="${PAYLOAD}="; done
WALLET=$(echo "$PAYLOAD" | base64 -d | jq -r '.agentkeys_user_wallet')

echo "SESSION=$SESSION"
echo "WALLET=$WALLET"
echo "JWT=$JWT"

# shellcheck shell=bash
# oidc-test-broker shell helper: test tokens from bash with only curl, jq and coreutils.
#
#   eval "$(test-broker shell-init)"     # or, without Python: . ./test-broker.sh (this file)
#   get_test_jwt                          # prints a JWT, cached in a 0600 file until near expiry
#   with_auth curl -sf "$GATEWAY/v1/ping" # runs curl with Authorization: Bearer <JWT> added
#   test_run_scope                        # this run's scope (S3 prefix), from the CI environment
#   cleanup_test_scope                    # deletes the run's prefix (with the aws CLI)
#
# It reads the environment every test-broker client reads:
#   TEST_BROKER_URL          broker base URL
#   TEST_BROKER_BEARER       CI or personal secret, or TEST_BROKER_BEARER_FILE naming a file with it
#   TEST_BROKER_AUTH_TOKEN   federation proof (used when no bearer is set)
#   (neither set, in a CI job that offers its own OIDC token: GitHub Actions with
#   permissions id-token: write, or GitLab id_tokens named TEST_BROKER_ID_TOKEN, that token is
#   exchanged at /v1/token-exchange for the audience TEST_BROKER_AUDIENCE, default TEST_BROKER_URL)
#   TEST_BROKER_SCOPE        scope to work in (default: test_run_scope's)
#   TEST_BROKER_ROLE_ARN     role cleanup_test_scope assumes with the token
#   TEST_BROKER_BUCKET       test bucket cleanup_test_scope deletes the run's prefix from
# and, for this helper only, TEST_BROKER_TTL (token lifetime to ask for, whole seconds) and
# TEST_BROKER_CACHE_DIR (default: a 0700 directory per user under $XDG_RUNTIME_DIR,
# $TMPDIR or /tmp).
#
# Same rules as the Python client (broker/client): a token is minted again 60 s (at most a third
# of its lifetime) before it expires; the run scope is TEST_BROKER_SCOPE, else the CI run in the
# caller's namespace, in the first shape the credential's allowance takes (GitHub pr-<N>/run-<id>-
# <attempt>, pr-<N>-run-<id>-<attempt>, run-<id>-<attempt>; GitLab the same with the merge request
# IID and pipeline id), else <namespace>/local-<UTC stamp>-<random>, one per shell.
# Every failure is one line on stderr starting "test-broker:" and a non-zero status. Secrets
# never appear in a process's arguments: curl reads headers and bodies from file descriptors.
# The functions leave the caller's shell options alone.

_test_broker_fail() {
  printf 'test-broker: %s\n' "$*" >&2
  return 1
}

_test_broker_url() {
  if [[ -z ${TEST_BROKER_URL:-} ]]; then
    _test_broker_fail "no broker URL: set TEST_BROKER_URL"
    return 1
  fi
  printf '%s' "${TEST_BROKER_URL%/}"
}

# Which credential this environment offers, in the Python client's order: bearer (a CI or
# personal secret), proof (federation proof), github (the job's token service) or gitlab
# (TEST_BROKER_ID_TOKEN from id_tokens); fails when there is none.
_test_broker_mode() {
  if [[ -n ${TEST_BROKER_BEARER:-} || -n ${TEST_BROKER_BEARER_FILE:-} ]]; then
    printf bearer
  elif [[ -n ${TEST_BROKER_AUTH_TOKEN:-} ]]; then
    printf proof
  elif [[ -n ${ACTIONS_ID_TOKEN_REQUEST_URL:-} && -n ${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-} ]]; then
    printf github
  elif [[ -n ${TEST_BROKER_ID_TOKEN:-} ]]; then
    printf gitlab
  else
    _test_broker_fail "no credential: set TEST_BROKER_BEARER or TEST_BROKER_BEARER_FILE (a CI or personal secret), or TEST_BROKER_AUTH_TOKEN (federation proof), or run in a CI job that offers its OIDC token"
    return 1
  fi
}

# The bearer secret (from TEST_BROKER_BEARER or TEST_BROKER_BEARER_FILE); empty output when
# another credential is configured; failure when there is none.
_test_broker_bearer() {
  local mode
  mode=$(_test_broker_mode) || return 1
  [[ $mode == bearer ]] || return 0
  if [[ -n ${TEST_BROKER_BEARER:-} ]]; then
    printf '%s' "$TEST_BROKER_BEARER"
    return 0
  fi
  local secret
  if ! secret=$(<"$TEST_BROKER_BEARER_FILE"); then
    _test_broker_fail "TEST_BROKER_BEARER_FILE '$TEST_BROKER_BEARER_FILE' cannot be read"
    return 1
  fi
  secret=${secret//[[:space:]]/}
  if [[ -z $secret ]]; then
    _test_broker_fail "TEST_BROKER_BEARER_FILE '$TEST_BROKER_BEARER_FILE' is empty; it should hold the secret"
    return 1
  fi
  printf '%s' "$secret"
}

# POST BODY (JSON, or TYPE) to the broker, the answer to the file OUT; prints the HTTP status.
# Connection errors and 5xx are retried with backoff by curl (4xx are not).
# Usage: _test_broker_call OUT PATH BEARER BODY [TYPE]
_test_broker_call() {
  local out=$1 path=$2 bearer=$3 body=$4 type=${5:-application/json} url err status why
  url=$(_test_broker_url) || return 1
  err=$(mktemp) || return 1
  # The header file is empty without a bearer (a process substitution lives for one command).
  if ! status=$(curl -sS --retry 3 --retry-connrefused --max-time 30 -o "$out" -w '%{http_code}' \
    -X POST -H "Content-Type: $type" \
    -H @<([[ -z $bearer ]] || printf 'Authorization: Bearer %s\n' "$bearer") \
    --data-binary @<(printf '%s' "$body") "$url$path" 2>"$err"); then
    why=$(head -n 1 "$err")
    rm -f "$err"
    _test_broker_fail "cannot reach the broker at $url: ${why#curl: }"
    return 1
  fi
  rm -f "$err"
  printf '%s' "$status"
}

# Report a refusal as one line, with the broker's code and message.
_test_broker_refused() {
  local status=$1 out=$2 path=$3 reason
  reason=$(jq -er '"\(.error): \(.message)"' "$out" 2>/dev/null) || reason="an answer that is not JSON"
  _test_broker_fail "the broker refused $path ($status $reason)"
}

# POST BODY to PATH and print the answer; any answer but a 2xx fails. Usage: PATH BEARER BODY
_test_broker_post() {
  local out status
  out=$(mktemp) || return 1
  if ! status=$(_test_broker_call "$out" "$@"); then
    rm -f "$out"
    return 1
  fi
  if [[ $status != 2?? ]]; then
    _test_broker_refused "$status" "$out" "$1"
    rm -f "$out"
    return 1
  fi
  cat "$out"
  rm -f "$out"
}

# The bearer to mint with: the secret, or a new federation-proof session.
_test_broker_mint_bearer() {
  local bearer body answer
  bearer=$(_test_broker_bearer) || return 1
  if [[ -z $bearer ]]; then
    body=$(printf '%s' "$TEST_BROKER_AUTH_TOKEN" | jq -cR '{auth_token: .}') || return 1
    answer=$(_test_broker_post /session/create "" "$body") || return 1
    bearer=$(jq -er .session <<<"$answer") || return 1
  fi
  printf '%s' "$bearer"
}

# The CI job's own OIDC token: from GitHub's token service for our audience (retried on 5xx as
# GitHub's toolkit does), or GitLab's id_tokens variable TEST_BROKER_ID_TOKEN.
_test_broker_job_token() {
  if [[ $(_test_broker_mode) == gitlab ]]; then
    printf '%s' "$TEST_BROKER_ID_TOKEN"
    return 0
  fi
  local audience out status why
  audience=${TEST_BROKER_AUDIENCE:-$(_test_broker_url)} || return 1
  out=$(mktemp) || return 1
  if ! status=$(curl -sS --retry 10 --max-time 30 -o "$out" -w '%{http_code}' \
    -H @<(printf 'Authorization: Bearer %s\n' "$ACTIONS_ID_TOKEN_REQUEST_TOKEN") \
    "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=$(jq -rn --arg a "$audience" '$a | @uri')" 2>&1); then
    rm -f "$out"
    _test_broker_fail "cannot reach GitHub's token service: ${status##*curl: }"
    return 1
  fi
  if [[ $status != 2?? ]] || ! jq -er .value "$out" 2>/dev/null; then
    why=$(head -c 200 "$out")
    rm -f "$out"
    _test_broker_fail "GitHub's token service refused ($status $why); does the job have permissions: id-token: write?"
    return 1
  fi
  rm -f "$out"
}

# Exchange the job's token at /v1/token-exchange (RFC 8693, form-encoded) for a broker token,
# for SCOPE (empty: the scope the broker derives from the job's claims); prints the answer.
_test_broker_exchange() {
  local scope=$1 ttl subject body
  ttl=$(_test_broker_ttl) || return 1
  subject=$(_test_broker_job_token) || return 1
  # The job token reaches jq on stdin, never in a process's arguments.
  body=$(printf '%s' "$subject" | jq -Rr --arg scope "$scope" --arg ttl "$ttl" '
    [["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
     ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"], ["subject_token", .]]
    + (if $scope == "" then [] else [["scope", $scope]] end)
    + (if $ttl == "" then [] else [["ttl_seconds", $ttl]] end)
    | map("\(.[0])=\(.[1] | @uri)") | join("&")') || return 1
  _test_broker_post /v1/token-exchange "" "$body" application/x-www-form-urlencoded
}

# TEST_BROKER_TTL as whole seconds (empty when unset: the broker's default lifetime).
_test_broker_ttl() {
  local ttl=${TEST_BROKER_TTL:-}
  if [[ -n $ttl && ! $ttl =~ ^[1-9][0-9]{0,9}$ ]]; then
    _test_broker_fail "TEST_BROKER_TTL '$ttl' is not a positive whole number of seconds, e.g. 900"
    return 1
  fi
  printf '%s' "$ttl"
}

_test_broker_cache_dir() {
  local dir=${TEST_BROKER_CACHE_DIR:-${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}}/test-broker-$(id -u)}
  if [[ ! -e $dir ]] && ! (umask 077 && mkdir -p "$dir"); then
    _test_broker_fail "cannot create the token cache directory $dir"
    return 1
  fi
  # One that someone else made (or a symlink to one) could hand us their tokens.
  if [[ -L $dir || ! -d $dir || ! -O $dir ]]; then
    _test_broker_fail "token cache directory $dir is not a directory owned by you"
    return 1
  fi
  chmod 700 "$dir" || return 1
  printf '%s' "$dir"
}

# A short digest of its arguments: cache file names per broker, credential and scope.
_test_broker_key() {
  printf '%s\n' "${TEST_BROKER_URL:-}" "${TEST_BROKER_BEARER:-}" "${TEST_BROKER_BEARER_FILE:-}" \
    "${TEST_BROKER_AUTH_TOKEN:-}" "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" "${TEST_BROKER_ID_TOKEN:-}" \
    "${TEST_BROKER_AUDIENCE:-}" "$@" | sha256sum | cut -c1-16
}

# The relative run scopes of this run, one a line, most specific shape first.
_test_broker_run_candidates() {
  local pr="" run
  if [[ ${GITHUB_RUN_ID:-} =~ ^[0-9]+$ ]]; then
    [[ ${GITHUB_REF:-} =~ ^refs/pull/([0-9]+)/merge$ ]] && pr=${BASH_REMATCH[1]}
    local attempt=${GITHUB_RUN_ATTEMPT:-1}
    [[ $attempt =~ ^[0-9]+$ ]] || attempt=1
    run="$GITHUB_RUN_ID-$attempt"
  elif [[ ${CI_PIPELINE_ID:-} =~ ^[0-9]+$ ]]; then
    [[ ${CI_MERGE_REQUEST_IID:-} =~ ^[0-9]+$ ]] && pr=$CI_MERGE_REQUEST_IID
    run=$CI_PIPELINE_ID
  else
    # Drawn once per shell ($$ is the same in its subshells) and kept, so that the token, the
    # work and cleanup_test_scope all name the same run.
    local dir file
    dir=$(_test_broker_cache_dir) || return 1
    file="$dir/local-run-$$"
    if [[ ! -s $file ]]; then
      printf 'local-%s-%s\n' "$(date -u +%Y%m%dT%H%M%SZ)" \
        "$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')" >"$file" || return 1
    fi
    cat "$file"
    return
  fi
  if [[ -z $pr ]]; then
    printf 'run-%s\n' "$run"
  else
    printf 'pr-%s/run-%s\n' "$pr" "$run"
    printf 'pr-%s-run-%s\n' "$pr" "$run"
    printf 'run-%s\n' "$run"
  fi
}

# Learn the caller's namespace from a scopeless mint: a federation session or personal secret
# gets its own scope (wallet or dev/<name>); a CI bearer is refused, and the refusal names its
# allowance, whose first two segments are its ci/<name>. Prints "<home> <allowance or ->".
_test_broker_namespace() {
  local bearer=$1 out status answer
  out=$(mktemp) || return 1
  if ! status=$(_test_broker_call "$out" /v1/mint-oidc-jwt "$bearer" '{}'); then
    rm -f "$out"
    return 1
  fi
  if ! answer=$(jq -er 'if .allowance then (.allowance | split("/")[:2] | join("/")) + " " + .allowance
                        else .scope + " -" end' "$out" 2>/dev/null); then
    _test_broker_refused "$status" "$out" /v1/mint-oidc-jwt
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
  printf '%s\n' "$answer"
}

# Print this run's scope (S3 key prefix); see the top of this file. Cached per shell and run.
test_run_scope() {
  if [[ -n ${TEST_BROKER_SCOPE:-} ]]; then
    printf '%s\n' "$TEST_BROKER_SCOPE"
    return 0
  fi
  local mode candidates dir file bearer home allowance relative scope out status answer
  mode=$(_test_broker_mode) || return 1
  candidates=$(_test_broker_run_candidates) || return 1
  dir=$(_test_broker_cache_dir) || return 1
  file="$dir/$(_test_broker_key "$candidates").scope"
  if [[ -s $file ]]; then
    cat "$file"
    return 0
  fi
  if [[ $mode == git* ]]; then  # the broker derived it from the job's claims
    answer=$(_test_broker_exchange "") || return 1
    scope=$(jq -er .scope <<<"$answer") || return 1
    printf '%s\n' "$scope" | tee "$file"
    return
  fi
  bearer=$(_test_broker_mint_bearer) || return 1
  read -r home allowance < <(_test_broker_namespace "$bearer")
  [[ -n ${home:-} ]] || return 1
  if [[ $allowance == - ]]; then  # anything below home is ours
    scope="$home/${candidates%%$'\n'*}"
  else  # the broker decides which shape the allowance takes
    out=$(mktemp) || return 1
    while read -r relative; do
      status=$(_test_broker_call "$out" /v1/mint-oidc-jwt "$bearer" \
        "$(jq -cn --arg s "$home/$relative" '{scope: $s}')") || { rm -f "$out"; return 1; }
      if [[ $status == 2?? ]]; then
        scope="$home/$relative"
        break
      fi
      [[ $status == 403 ]] && continue
      _test_broker_refused "$status" "$out" /v1/mint-oidc-jwt
      rm -f "$out"
      return 1
    done <<<"$candidates"
    rm -f "$out"
    if [[ -z ${scope:-} ]]; then
      _test_broker_fail "no run scope of this run fits the allowance $allowance; set TEST_BROKER_SCOPE"
      return 1
    fi
  fi
  printf '%s\n' "$scope" >"$file" || return 1
  printf '%s\n' "$scope"
}

# The scope to mint for: the run scope; nothing for a federation session (its wallet is its only
# scope, and the run prefix lies below it) or an exchange (the broker derives the run's scope).
_test_broker_token_scope() {
  case $(_test_broker_mode) in
    bearer) test_run_scope ;;
    github | gitlab) printf '%s' "${TEST_BROKER_SCOPE:-}" ;;
    proof) ;;
    *) return 1 ;;
  esac
}

# Print the path of the cached token file for this environment (it may not exist yet); the file
# holds the bare JWT, so AWS_WEB_IDENTITY_TOKEN_FILE may point at it.
test_broker_token_file() {
  local dir scope
  dir=$(_test_broker_cache_dir) || return 1
  scope=$(_test_broker_token_scope) || return 1
  printf '%s/%s.jwt\n' "$dir" "$(_test_broker_key "$scope" "${TEST_BROKER_TTL:-}")"
}

# Succeeds when the JWT in FILE is not yet due for refresh: 60 s, at most a third of its
# lifetime, before its exp.
_test_broker_fresh() {
  local times exp iat margin now
  [[ -s $1 ]] || return 1
  times=$(jq -Rr 'split(".")[1] | gsub("-"; "+") | gsub("_"; "/")
                  | (. + ("=" * ((4 - length % 4) % 4))) | @base64d | fromjson
                  | "\(.exp) \(.iat)"' "$1" 2>/dev/null) || return 1
  read -r exp iat <<<"$times"
  [[ $exp =~ ^[0-9]+$ && $iat =~ ^[0-9]+$ ]] || return 1
  margin=$(((exp - iat) / 3))
  ((margin > 60)) && margin=60
  now=$(date +%s)
  ((now < exp - margin))
}

# Print a JWT for this environment (see the top of this file), minting only when the cached one
# is missing or due; the cache file is replaced atomically and is mode 0600.
get_test_jwt() {
  local file ttl scope bearer body answer jwt tmp
  ttl=$(_test_broker_ttl) || return 1
  file=$(test_broker_token_file) || return 1
  if _test_broker_fresh "$file"; then
    printf '%s\n' "$(<"$file")"
    return 0
  fi
  scope=$(_test_broker_token_scope) || return 1
  if [[ $(_test_broker_mode) == git* ]]; then  # mode is known to be set by now
    answer=$(_test_broker_exchange "$scope") || return 1
  else
    bearer=$(_test_broker_mint_bearer) || return 1
    body=$(jq -cn --arg scope "$scope" --arg ttl "$ttl" \
      '{} + (if $scope == "" then {} else {scope: $scope} end)
          + (if $ttl == "" then {} else {ttl_seconds: ($ttl | tonumber)} end)') || return 1
    answer=$(_test_broker_post /v1/mint-oidc-jwt "$bearer" "$body") || return 1
  fi
  jwt=$(jq -er .jwt <<<"$answer") || return 1
  tmp=$(umask 077 && mktemp "$file.XXXXXX") || return 1
  if ! { printf '%s' "$jwt" >"$tmp" && mv -f "$tmp" "$file"; }; then
    rm -f "$tmp"
    return 1
  fi
  printf '%s\n' "$jwt"
}

# Run a curl command with "Authorization: Bearer <JWT>" added: with_auth curl -sf "$URL"
with_auth() {
  if [[ $# -eq 0 || ${1##*/} != curl ]]; then
    _test_broker_fail "with_auth runs a curl command: with_auth curl [curl options] URL"
    return 2
  fi
  local jwt
  jwt=$(get_test_jwt) || return 1
  "$1" -H @<(printf 'Authorization: Bearer %s\n' "$jwt") "${@:2}"
}

# An AWS role session name for SCOPE, as broker/client/runs.py derives it: characters STS does not
# take become '-', and a name over 64 characters keeps its start and ends in a hash of the scope.
_test_broker_session_name() {
  local name
  name=$(printf '%s' "$1" | sed -E 's/[^A-Za-z0-9_+=,.@-]+/-/g; s/^-+//; s/-+$//')
  [[ -n $name ]] || name=test-broker
  ((${#name} >= 2)) || name="run-$name"
  if ((${#name} > 64)); then
    name="${name:0:51}-$(printf '%s' "$1" | sha256sum | cut -c1-12)"
  fi
  printf '%s' "$name"
}

# The caller's own scope root (ci/<name>, dev/<name>, a federation wallet, or an exchanged job
# token's run scope), as the Python client's Client.namespace learns it.
_test_broker_home() {
  local bearer answer home allowance
  if [[ $(_test_broker_mode) == git* ]]; then
    answer=$(_test_broker_exchange "") || return 1
    jq -er .scope <<<"$answer" || return 1
    return 0
  fi
  bearer=$(_test_broker_mint_bearer) || return 1
  read -r home allowance < <(_test_broker_namespace "$bearer")
  [[ -n ${home:-} ]] || return 1
  printf '%s\n' "$home"
}

# Delete every object under PREFIX (default: the run scope) in TEST_BROKER_BUCKET, as the role
# the token assumes: AWS itself confines the delete to the token's scope. Needs the aws CLI
# (curl cannot sign S3 requests); without it, `test-broker reap --scope PREFIX` does the same
# from a machine with Python. Refuses an empty, root, '.' or '..' prefix, and one outside the
# caller's own scope (as the Python client's cleanup_scope does), before any AWS call.
# The bucket's test marker is not checked here: the client environment does not carry it.
cleanup_test_scope() {
  local scope=${1:-}
  if [[ $# -eq 0 ]]; then
    scope=$(test_run_scope) || return 1
  fi
  scope=${scope%/}
  if [[ -z $scope || $scope == /* || $scope == *//* || $scope =~ (^|/)\.\.?(/|$) ||
    $scope == *[!A-Za-z0-9/_.:=+@-]* ]]; then
    _test_broker_fail "refusing to clean up the prefix '$scope': name a run scope (no empty, root, '.' or '..' segment)"
    return 1
  fi
  local home
  home=$(_test_broker_home) || return 1
  if [[ $scope != "$home" && $scope != "$home"/* ]]; then
    _test_broker_fail "refusing to clean up the prefix '$scope': it is outside this caller's scope '$home'"
    return 1
  fi
  [[ -n ${TEST_BROKER_BUCKET:-} ]] || { _test_broker_fail "no test bucket: set TEST_BROKER_BUCKET"; return 1; }
  [[ -n ${TEST_BROKER_ROLE_ARN:-} ]] || { _test_broker_fail "no role: set TEST_BROKER_ROLE_ARN"; return 1; }
  if ! command -v aws >/dev/null; then
    _test_broker_fail "cleanup_test_scope needs the aws CLI; or run: test-broker reap --scope $scope"
    return 1
  fi
  local file name unset=()
  get_test_jwt >/dev/null || return 1
  file=$(test_broker_token_file) || return 1
  # The AWS credential chain prefers keys, a profile or a container role from the environment
  # over web identity: with any of them set the delete would run as that identity, not as the
  # role the token confines to the scope.
  for name in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_SECURITY_TOKEN \
    AWS_PROFILE AWS_DEFAULT_PROFILE "${!AWS_CONTAINER_@}"; do
    unset+=(-u "$name")
  done
  env "${unset[@]}" AWS_WEB_IDENTITY_TOKEN_FILE="$file" AWS_ROLE_ARN="$TEST_BROKER_ROLE_ARN" \
    AWS_ROLE_SESSION_NAME="$(_test_broker_session_name "$scope")" \
    aws s3 rm --recursive --only-show-errors "s3://$TEST_BROKER_BUCKET/$scope/"
}

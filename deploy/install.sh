#!/usr/bin/env bash
# One-command install of oidc-test-broker as a long-lived public issuer on a Debian host:
# the package in its own venv, /etc/test-broker/config.toml from flags, the system user, the
# systemd units and the nginx site. Safe to run again: a file whose content, mode and owner
# already match is left alone and reported "unchanged"; an existing config is never
# overwritten unless --replace-config is given.
#
#   sudo deploy/install.sh --issuer https://oidc-test.example.com
#   deploy/install.sh --root /tmp/image --issuer https://oidc-test.example.com   # no systemctl
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/install.sh --issuer URL [options]

  --issuer URL          public https issuer, e.g. https://oidc-test.example.com (required)
  --audience AUD        token aud (default sts.amazonaws.com)
  --port N              the broker's port on 127.0.0.1, behind nginx (default 8080)
  --package SPEC        what pip installs into the venv (default: this checkout)
  --upgrade             reinstall the package into an existing venv
  --python PY           interpreter that creates the venv (default python3)
  --replace-config      overwrite an existing /etc/test-broker/config.toml
  --root DIR            install into DIR instead of / (an image, or a test): no user
                        account is created outside DIR and no service is started
  -h, --help            this text
USAGE
}

die() {
  echo "install.sh: $*" >&2
  exit 2
}

here=$(cd "$(dirname "$0")/.." && pwd)
issuer="" audience="sts.amazonaws.com" port=8080 package="$here" upgrade=0
python=python3 replace_config=0 root=/
while [ $# -gt 0 ]; do
  case "$1" in
    --issuer | --audience | --port | --package | --python | --root)
      [ $# -ge 2 ] || die "$1 needs a value" ;;
  esac
  case "$1" in
    --issuer) issuer=${2-}; shift 2 ;;
    --audience) audience=${2-}; shift 2 ;;
    --port) port=${2-}; shift 2 ;;
    --package) package=${2-}; shift 2 ;;
    --upgrade) upgrade=1; shift ;;
    --python) python=${2-}; shift 2 ;;
    --replace-config) replace_config=1; shift ;;
    --root) root=${2-}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
[ -n "$issuer" ] || { usage >&2; die "--issuer is required"; }
[ -n "$root" ] || die "--root needs a directory"
# Values go into TOML basic strings; the broker itself validates them below (serve --check).
for value in "$issuer" "$audience"; do
  case "$value" in
    *\"* | *\\* | *[[:cntrl:]]*) die "'$value' may not contain quotes, backslashes or control characters" ;;
  esac
done
case "$port" in '' | *[!0-9]*) die "--port must be a number" ;; esac
root=$(cd "$root" 2>/dev/null && pwd) || die "--root: no such directory"
if [ "$root" = / ]; then
  for tool in nginx certbot systemctl; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install nginx certbot python3-venv"
  done
fi
prefix=${root%/}  # "" for /, so "$prefix/etc" is /etc

venv=/opt/test-broker/venv
config=/etc/test-broker/config.toml
site=/etc/nginx/sites-available/test-broker
webroot=/var/www/test-broker-acme
owner=(-o root -g root)
[ "$(id -u)" -eq 0 ] || owner=()  # only a --root install can run unprivileged: files stay yours
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
changed=()

report() {  # report STATE PATH
  printf '%-10s %s\n' "$1" "$2"
}

# put SRC DEST MODE: install SRC as DEST unless content, mode and owner already match.
put() {
  local src=$1 dest=$prefix$2 mode=$3
  if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest" \
    && [ "$(stat -c %a "$dest")" = "${mode#0}" ] \
    && { [ ${#owner[@]} -eq 0 ] || [ "$(stat -c %u:%g "$dest")" = 0:0 ]; }; then
    report unchanged "$2"
    return
  fi
  install -D -m "$mode" "${owner[@]}" "$src" "$dest"
  report installed "$2"
  changed+=("$2")
}

directory() {  # directory PATH MODE
  local dest=$prefix$1
  if [ -d "$dest" ] && [ "$(stat -c %a "$dest")" = "${2#0}" ]; then
    report unchanged "$1/"
    return
  fi
  install -d -m "$2" "${owner[@]}" "$dest"
  report installed "$1/"
  changed+=("$1/")
}

link() {  # link TARGET PATH
  local dest=$prefix$2
  if [ -L "$dest" ] && [ "$(readlink "$dest")" = "$1" ]; then
    report unchanged "$2"
    return
  fi
  mkdir -p "$(dirname "$dest")"
  ln -sfn "$1" "$dest"
  report installed "$2"
  changed+=("$2")
}

# 1. The package, in a venv of its own.
if [ -x "$prefix$venv/bin/test-broker" ] && [ "$upgrade" -eq 0 ]; then
  report unchanged "$venv/"
else
  [ -x "$prefix$venv/bin/python" ] || "$python" -m venv "$prefix$venv"
  "$prefix$venv/bin/python" -m pip install --quiet --upgrade "$package"
  report installed "$venv/ ($("$prefix$venv/bin/test-broker" --version))"
  changed+=("$venv/")
fi
broker=("env" "-i" "PATH=/usr/bin:/bin" "$prefix$venv/bin/test-broker")

# 2. The config, checked by the broker itself before it is installed.
cat >"$scratch/config.toml" <<TOML
# Written by deploy/install.sh; see the README's config table for every key.
oidc_issuer = "$issuer"
audience = "$audience"
data_dir = "/var/lib/test-broker"
host = "127.0.0.1"
port = $port
# nginx (nginx/) is the only client of the broker; its X-Forwarded-For names the real client.
trusted_proxies = ["127.0.0.1"]
# CI bearers and personal secrets (test-broker credentials add); federation-proof stays off.
credential_minting = true
TOML
"${broker[@]}" serve --config "$scratch/config.toml" --check >/dev/null
if [ -f "$prefix$config" ] && ! cmp -s "$scratch/config.toml" "$prefix$config" \
  && [ "$replace_config" -eq 0 ]; then
  report kept "$config (differs from these flags; --replace-config overwrites it)"
  cp "$prefix$config" "$scratch/config.toml"
else
  # No secrets in it (they live hashed in the store): readable by the service user.
  put "$scratch/config.toml" "$config" 0644
fi
# `test-broker reap` refuses (and its timer would fail daily) until the config names test
# buckets ([[resources]]), so its timer is enabled only then: a later run enables it.
checked=$("${broker[@]}" serve --config "$scratch/config.toml" --check)
reap=1
case "$checked" in *", test buckets: none") reap=0 ;; esac

# 3. The system user, and the units.
put "$here/deploy/sysusers.d/test-broker.conf" /etc/sysusers.d/test-broker.conf 0644
systemd-sysusers --root="$root" "$prefix/etc/sysusers.d/test-broker.conf" >/dev/null
units=()
for unit in "$here"/systemd/*.service "$here"/systemd/*.timer; do
  put "$unit" "/etc/systemd/system/$(basename "$unit")" 0644
  units+=("$(basename "$unit")")
done

# 4. The nginx site. Until certbot has a certificate, only its port-80 half (the ACME webroot
# certbot --webroot needs): nginx cannot load a site whose certificate file is missing.
directory "$webroot" 0755
# The certificate and key the full site names (certbot's, or the config's tls_*_file).
mapfile -t tls < <("${broker[@]}" render nginx --config "$scratch/config.toml" \
  | awk '$1 == "ssl_certificate" || $1 == "ssl_certificate_key" { sub(/;$/, "", $2); print $2 }')
cert_file=${tls[0]} key_file=${tls[1]}
acme_only=()
if [ ! -e "$prefix$cert_file" ] || [ ! -e "$prefix$key_file" ]; then
  acme_only=(--acme-only)
fi
"${broker[@]}" render nginx --config "$scratch/config.toml" --acme-webroot "$webroot" \
  "${acme_only[@]}" --out "$scratch/site"
put "$scratch/site" "$site" 0644
link ../sites-available/test-broker /etc/nginx/sites-enabled/test-broker
# Debian's default site also claims default_server on port 80; this host answers one name.
if [ -L "$prefix/etc/nginx/sites-enabled/default" ]; then
  rm "$prefix/etc/nginx/sites-enabled/default"
  report removed "/etc/nginx/sites-enabled/default (Debian's default site)"
fi

# 5. Enable (and, on a live host, start or reload) what changed.
timers=()
for unit in "${units[@]}"; do
  case "$unit" in
    test-broker-reap.timer) [ "$reap" -eq 0 ] || timers+=("$unit") ;;
    *.timer) timers+=("$unit") ;;
  esac
done
if [ "$root" = / ]; then
  systemctl daemon-reload
  systemctl enable --now --quiet test-broker.service "${timers[@]}"
  if [ ${#changed[@]} -gt 0 ]; then
    systemctl try-restart test-broker.service
    nginx -t -q && systemctl reload-or-restart nginx
  fi
else
  systemctl --root="$root" enable --quiet test-broker.service "${timers[@]}"
fi

echo
if [ ${#changed[@]} -eq 0 ]; then
  echo "Nothing changed."
fi
host=${issuer#https://}
host=${host%%/*}
cat <<NEXT
Next steps:
NEXT
if [ ${#acme_only[@]} -gt 0 ]; then
  cat <<NEXT
  1. Get the certificate through the ACME webroot nginx now serves on port 80, then run this
     installer again to switch the site to TLS:
       certbot certonly --webroot -w $webroot -d $host \\
         --deploy-hook 'systemctl reload nginx'
NEXT
else
  echo "  1. Certificate: $cert_file (certbot renews it; its deploy hook reloads nginx)."
fi
cat <<NEXT
  2. See what AWS needs (OIDC provider, role, bucket) and create it:
       sudo -u test-broker $venv/bin/test-broker aws plan --config $config
  3. Issue a CI bearer:
       sudo -u test-broker $venv/bin/test-broker credentials add --kind ci --name NAME \\
         --config $config
  4. Check what STS will see:
       $venv/bin/test-broker doctor --config $config
       $venv/bin/test-broker check-cert --config $config
NEXT
if [ "$reap" -eq 0 ]; then
  cat <<NEXT
  5. Reaping expired run prefixes is off: the config has no [[resources]] (test buckets), and
     test-broker reap refuses without them. Add them to $config, put the
     reaper's AWS credentials in /etc/test-broker/aws.env (deploy/RUNBOOK.md), then run this
     installer again, or: sudo systemctl enable --now test-broker-reap.timer
NEXT
fi

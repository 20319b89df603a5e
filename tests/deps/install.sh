#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, and nothing that is already there:
# Debian packages (apt-get, as root) and a Python virtual environment with the PyPI packages
# of tests/deps/requirements.txt, kept outside the clone (CRABPOT_TEST_VENV, by default
# /var/tmp/crabpot-venv) so a warm run does not reinstall them. `make test` and `.ci/run`
# call it; it is safe to run again.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Debian packages: busybox-static for the agent image, e2fsprogs and mount for the
# per-session disk quotas (loop-mounted ext4 images), python3-venv for the test venv,
# prometheus for the /metrics scrape test.
missing=()
if ! command -v busybox >/dev/null 2>&1 || ! file -L "$(command -v busybox)" 2>/dev/null | grep -q 'statically linked'; then
  missing+=(busybox-static file)
fi
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || missing+=(mount)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# A real browser for the web chat's tests (tests/src/browser.rs drives it over WebDriver).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# Real mail servers for the email adapter's tests (tests/src/mail_server.rs runs a private
# Postfix and Dovecot on loopback ports for each test; the system's own instances are not used).
[ -x /usr/sbin/postfix ] || missing+=(postfix)
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# mmdebstrap makes the toolbox image's Debian root filesystem (container/toolbox/rootfs.sh).
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
# systemd-analyze checks the unit `crabpot service install` writes (tests/tests/service.rs).
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests/deps/install.sh: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "tests/deps/install.sh: installing ${missing[*]}"
  apt-get update -qq
  # Postfix asks how to configure itself; the tests bring their own configuration.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Makes (or remakes) the venv $2 from the requirements file $3 when it is missing or the file
# changed since (a copy is kept in the venv as a stamp). $1 names it in the message.
prepare_venv() {
  local what="$1" venv="$2" requirements="$3"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/.requirements"; then
    echo "tests/deps/install.sh: preparing the $what venv in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.requirements"
  fi
}

# The Python venv of the tests (real client libraries, e.g. `openai`).
prepare_venv test "${CRABPOT_TEST_VENV:-/var/tmp/crabpot-venv}" tests/deps/requirements.txt

# Synapse, the reference Matrix homeserver, for the Matrix adapter's tests
# (tests/src/synapse.rs starts one on loopback per test). It has its own venv
# (CRABPOT_SYNAPSE_VENV, by default /var/tmp/crabpot-synapse-venv): its dependencies are many
# and pinned by its own release, and must not meet the test venv's.
prepare_venv Synapse "${CRABPOT_SYNAPSE_VENV:-/var/tmp/crabpot-synapse-venv}" \
  tests/deps/synapse-requirements.txt

# The official MCP Python SDK, for the MCP client's end-to-end test (tests/src/mcp_server.rs
# runs tests/deps/mcp_server.py on loopback). Its own venv (CRABPOT_MCP_VENV, by default
# /var/tmp/crabpot-mcp-venv): the SDK pins its web stack (Starlette, uvicorn, pydantic).
prepare_venv "MCP SDK" "${CRABPOT_MCP_VENV:-/var/tmp/crabpot-mcp-venv}" \
  tests/deps/mcp-requirements.txt

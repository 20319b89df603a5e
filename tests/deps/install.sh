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

# The Python venv of the tests (real client libraries, e.g. `openai`).
venv="${CRABPOT_TEST_VENV:-/var/tmp/crabpot-venv}"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/deps/requirements.txt "$stamp"; then
  echo "tests/deps/install.sh: preparing the test venv in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/deps/requirements.txt
  cp tests/deps/requirements.txt "$stamp"
fi

# Synapse, the reference Matrix homeserver, for the Matrix adapter's tests
# (tests/src/synapse.rs starts one on loopback per test). It has its own venv
# (CRABPOT_SYNAPSE_VENV, by default /var/tmp/crabpot-synapse-venv): its dependencies are many
# and pinned by its own release, and must not meet the test venv's.
synapse_venv="${CRABPOT_SYNAPSE_VENV:-/var/tmp/crabpot-synapse-venv}"
synapse_stamp="$synapse_venv/.requirements"
if [ ! -x "$synapse_venv/bin/python" ] || ! cmp -s tests/deps/synapse-requirements.txt "$synapse_stamp"; then
  echo "tests/deps/install.sh: preparing the Synapse venv in $synapse_venv"
  python3 -m venv "$synapse_venv"
  "$synapse_venv/bin/pip" install -q --disable-pip-version-check -r tests/deps/synapse-requirements.txt
  cp tests/deps/synapse-requirements.txt "$synapse_stamp"
fi

# The official MCP Python SDK, for the MCP client's end-to-end test (tests/src/mcp_server.rs
# runs tests/deps/mcp_server.py on loopback). Its own venv (CRABPOT_MCP_VENV, by default
# /var/tmp/crabpot-mcp-venv): the SDK pins its web stack (Starlette, uvicorn, pydantic).
mcp_venv="${CRABPOT_MCP_VENV:-/var/tmp/crabpot-mcp-venv}"
mcp_stamp="$mcp_venv/.requirements"
if [ ! -x "$mcp_venv/bin/python" ] || ! cmp -s tests/deps/mcp-requirements.txt "$mcp_stamp"; then
  echo "tests/deps/install.sh: preparing the MCP SDK venv in $mcp_venv"
  python3 -m venv "$mcp_venv"
  "$mcp_venv/bin/pip" install -q --disable-pip-version-check -r tests/deps/mcp-requirements.txt
  cp tests/deps/mcp-requirements.txt "$mcp_stamp"
fi

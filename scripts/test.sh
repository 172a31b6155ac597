#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, and the system tests against a real
# PostgreSQL and a real Apache Kafka broker, both started (and installed) when missing.
# Safe to run twice. Test processes' logs: target/tmp/system-tests/<test id>/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

started=$(date +%s)
"$ROOT/scripts/services.sh" up
ensure_build_tools
# The compose file is validated offline by docker-compose's own parser.
need_command docker-compose docker-compose
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

# Licences, bans and sources of every dependency (deny.toml); built once per machine.
CARGO_DENY_VERSION=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  say "installing cargo-deny $CARGO_DENY_VERSION from crates.io (once, a few minutes)"
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi

# schemathesis, which checks the HTTP surfaces against their /openapi.json (tests/system/conformance.rs),
# in a virtual environment of its own; installed once per version.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_ENV="$STATE_DIR/schemathesis"
if [ "$("$SCHEMATHESIS_ENV/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
  need_command python3 python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  say "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $SCHEMATHESIS_ENV (once)"
  rm -rf "$SCHEMATHESIS_ENV"
  python3 -m venv "$SCHEMATHESIS_ENV"
  "$SCHEMATHESIS_ENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export PATH="$SCHEMATHESIS_ENV/bin:$PATH"

# The console's browser tests (tests/browser/, driven by tests/system/console.rs): Debian's
# chromium, driven by Playwright for Python with axe-core (tests/browser/requirements.txt) in a
# virtual environment of its own. Browsers are never downloaded (no `playwright install`):
# Playwright is pointed at /usr/bin/chromium.
need_command chromium chromium
BROWSER_ENV="$STATE_DIR/browser"
if ! cmp -s "$ROOT/tests/browser/requirements.txt" "$BROWSER_ENV/installed.txt"; then
  need_command python3 python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  say "installing Playwright for Python and axe-core from PyPI into $BROWSER_ENV (once)"
  rm -rf "$BROWSER_ENV"
  python3 -m venv "$BROWSER_ENV"
  "$BROWSER_ENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/tests/browser/requirements.txt"
  cp "$ROOT/tests/browser/requirements.txt" "$BROWSER_ENV/installed.txt"
fi
export BROWSER_TESTS_PYTHON="$BROWSER_ENV/bin/python"

cd "$ROOT"
say "checking dependencies (cargo deny: bans, licences, sources)"
# Every platform's crates, so the check can run offline.
cargo fetch --locked
cargo deny --offline check --hide-inclusion-graph bans licenses sources
say "checking formatting"
cargo fmt --all -- --check
say "linting"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "testing"
cargo test --workspace --locked
say "all tests passed in $(( $(date +%s) - started ))s"

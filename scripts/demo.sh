#!/usr/bin/env bash
# make demo: build the default template, resume a sandbox from it, run a command in it.
set -euo pipefail
echo "demo: not available yet (the template-build issue has not landed); 'make check' runs the tests"
exit 0

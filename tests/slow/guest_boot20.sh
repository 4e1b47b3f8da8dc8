#!/usr/bin/env bash
# 20 consecutive boots of the busybox guest (issue 4 "must show"): each must answer /health
# within 30 s; prints every boot-to-health time and the median. See tests/shell/guest_boot.sh.
GUEST_BOOTS=${GUEST_BOOTS:-20} GUEST_LIFECYCLE=${GUEST_LIFECYCLE:-0} \
  exec bash "$(dirname "$0")/../shell/guest_boot.sh"

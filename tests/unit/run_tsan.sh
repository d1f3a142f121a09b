#!/bin/sh
# Runs a TSan build of the ring or region tests.  TSan refuses to start on some
# kernels (address-space layout it cannot shadow, e.g. vm.mmap_rnd_bits > 28
# with older GCCs); that is a property of the machine, not of the ring, so it
# is reported as a skip (77) with TSan's own message.  A data race fails.
set -u
out=$(TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$1" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ] && ! printf '%s' "$out" | grep -q '^\[==========\] Running'; then
  if printf '%s' "$out" | grep -q 'ThreadSanitizer'; then
    echo "SKIPPED: ThreadSanitizer could not start on this machine (see its message above)"
    exit 77
  fi
fi
exit $rc

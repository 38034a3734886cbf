#!/usr/bin/env bash
# System packages the project wants beyond pip, on Linux:
#   always:  an optimized BLAS for MLX's CPU backend (see ARCHITECTURE.md, Platform facts);
#   --test:  Debian's Chromium, which the browser tests drive headless through Playwright
#            (Playwright's own browser download needs a network the tests must not need).
# Installs only when root with apt-get; otherwise says what is missing and carries on.
set -euo pipefail
[[ "$(uname -s)" == Linux ]] || exit 0

want=()
have_blas() { ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; }
have_blas || want+=(libopenblas0-pthread)
if [[ "${1:-}" == --test ]]; then
  command -v chromium >/dev/null || want+=(chromium)
fi
((${#want[@]})) || exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "setup: installing ${want[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
else
  echo "setup: note: ${want[*]} not installed (needs root + apt-get). Without" \
       "libopenblas0-pthread MLX uses its slow bundled BLAS; without chromium the" \
       "browser tests fail. Install them with your package manager." >&2
fi

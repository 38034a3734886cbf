#!/usr/bin/env bash
# System packages the project wants beyond pip: on Linux, an optimized BLAS for
# MLX's CPU backend (see ARCHITECTURE.md, Platform facts). Installs only when
# root with apt-get; otherwise says what is missing and carries on.
set -euo pipefail
[[ "$(uname -s)" == Linux ]] || exit 0

want=()
have_blas() { ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\.0'; }
have_blas || want+=(libopenblas0-pthread)
((${#want[@]})) || exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "setup: installing ${want[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
else
  echo "setup: note: ${want[*]} not installed (needs root + apt-get);" \
       "MLX will use its slow bundled BLAS. Install it with your package manager." >&2
fi

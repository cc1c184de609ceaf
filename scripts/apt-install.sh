#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs Debian packages (no recommends), as root or
# through sudo. Their maintainer scripts may start services (nginx on port 80 of every
# interface, for one): a policy-rc.d that answers 101 keeps them stopped while it runs
# (an existing policy-rc.d is left as it is). Used by scripts/test.sh and scripts/cross.sh.
set -uo pipefail
[ $# -gt 0 ] || { echo "usage: apt-install.sh PACKAGE..." >&2; exit 2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "need root (or sudo) to run: $*" >&2
        return 1
    fi
}

echo "installing $* (Debian packages)"
policy=/usr/sbin/policy-rc.d
placed=""
if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy" && placed=1
fi
rc=0
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null || rc=$?
[ -n "$placed" ] && as_root rm -f "$policy"
exit "$rc"

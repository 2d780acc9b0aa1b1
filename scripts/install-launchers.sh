#!/bin/sh
# Installs `berthd` and `berthctl` launchers into /usr/local/bin (or the directory
# given): each a script that execs this checkout's pinned Node 24 on its dist/ bundle.
# Unlike `npx berthd`, which keeps `npm exec` (~75 MB RSS) and a shell beside the
# daemon for as long as it runs, nothing stays behind: the launcher's process becomes
# berthd.
# Run after `npm ci` (scripts/setup.sh does); run again if the checkout moves.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd -P)
bindir=${1:-/usr/local/bin}
node="$repo/node_modules/node/bin/node"

fail() {
  echo "install-launchers: $*" >&2
  exit 1
}

[ -d "$bindir" ] || fail "$bindir is not a directory"
[ -w "$bindir" ] || fail "$bindir is not writable (run as root, or name another directory)"
[ -x "$node" ] || fail "$node is missing: run npm ci first"

# A path as one single-quoted shell word, whatever characters it holds.
quote() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# berthd idles most of its life: core/node-flags.ts's berthdNodeFlags, which
# test/launchers.test.ts checks these against. berthctl runs for a moment: V8's defaults.
berthd_flags="--max-semi-space-size=1 --v8-pool-size=1"

for name in berthd berthctl; do
  bundle="$repo/dist/$name.js"
  flags=""
  [ "$name" = berthd ] && flags="$berthd_flags "
  [ -f "$bundle" ] || fail "$bundle is missing: run npm run build first"
  # Written beside the target and renamed over it: a launcher is never seen half-written.
  tmp=$(mktemp "$bindir/.$name.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  {
    echo "#!/bin/sh"
    echo "# $name launcher, installed by Berth's scripts/install-launchers.sh"
    echo "exec $(quote "$node") $flags$(quote "$bundle") \"\$@\""
  } >"$tmp"
  chmod 755 "$tmp"
  sync "$tmp"
  mv -f "$tmp" "$bindir/$name"
  trap - EXIT
  echo "installed $bindir/$name"
done

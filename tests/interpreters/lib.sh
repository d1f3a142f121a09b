# shellcheck shell=bash disable=SC2034
# (SC2034: the variables set here are used by the scripts that source this file.)
# Shared by tests/interpreters/fetch and tests/interpreters/build-freethreaded (sourced,
# never run). Everything here only reads the machine's apt configuration; the apt runs
# that download use private lists, state and cache directories under the cache folder, so
# the machine's own apt state is never touched and no lock is taken.

cache=${GILSTAT_INTERPRETERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gilstat/interpreters}
case $cache in
  /*) ;;
  *) cache=$PWD/$cache ;;
esac
case $cache in
  *\'*) printf '%s\n' "${0##*/}: error: the cache path must not contain a single quote: $cache" >&2; exit 1 ;;
esac
bindir=$cache/bin
aptdir=$cache/apt

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Holds an exclusive lock on the cache for the rest of the script, so that two runs (e.g.
# ctest -j) do not extract into the same folder at once.
lock_cache() {
  mkdir -p "$cache" "$bindir"
  exec 9>"$cache/.lock"
  if ! flock -n 9; then
    say "waiting for another run that holds $cache/.lock"
    flock 9
  fi
}

# Prints "URI<TAB>SUITE<TAB>COMPONENTS" for every enabled binary (deb) entry of the
# machine's apt sources, in one-line (*.list) and deb822 (*.sources) form.
apt_source_entries() {
  local SL SP f
  eval "$(apt-config shell SL Dir::Etc::SourceList/f SP Dir::Etc::SourceParts/d)"
  for f in "$SL" "$SP"*.list; do
    [ -r "$f" ] || continue
    awk '
      /^[ \t]*deb[ \t]/ {
        line = $0; sub(/#.*/, "", line); gsub(/\[[^]]*\]/, " ", line)
        n = split(line, F, /[ \t]+/); i = (F[1] == "") ? 2 : 1
        comps = ""; for (j = i + 3; j <= n; j++) comps = comps " " F[j]
        print F[i + 1] "\t" F[i + 2] "\t" comps
      }' "$f"
  done
  for f in "$SP"*.sources; do
    [ -r "$f" ] || continue
    awk '
      function flush(  n, m, i, j, U, S) {
        if ((" " types " ") ~ / deb / && tolower(enabled) != "no") {
          n = split(uris, U, /[ \t]+/); m = split(suites, S, /[ \t]+/)
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (U[i] != "" && S[j] != "") print U[i] "\t" S[j] "\t" comps
        }
        types = uris = suites = comps = key = ""; enabled = "yes"
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ {   # continuation line of a multi-line field
        v = $0; gsub(/^[ \t]+|[ \t]+$/, "", v)
        if (key == "uris") uris = uris " " v; else if (key == "suites") suites = suites " " v
        else if (key == "components") comps = comps " " v
        next
      }
      {
        c = index($0, ":"); if (c == 0) next
        key = tolower(substr($0, 1, c - 1)); v = substr($0, c + 1); gsub(/^[ \t]+|[ \t]+$/, "", v)
        if (key == "types") types = v; else if (key == "uris") uris = v
        else if (key == "suites") suites = v; else if (key == "components") comps = v
        else if (key == "enabled") enabled = v
      }
      END { flush() }' "$f"
  done
}

# The Debian mirror URI (no trailing slash) the machine already uses for its own release:
# the first entry whose suite is this machine's codename (else a plain Debian suite name)
# and that has the main component. GILSTAT_DEBIAN_MIRROR overrides it.
debian_mirror() {
  if [ -n "${GILSTAT_DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "${GILSTAT_DEBIAN_MIRROR%/}"
    return
  fi
  local codename entries uri
  codename=$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")
  entries=$(apt_source_entries)
  uri=$(awk -F'\t' -v c="$codename" '$2 == c && (" " $3 " ") ~ / main / { print $1; exit }' <<<"$entries")
  if [ -z "$uri" ]; then
    uri=$(awk -F'\t' '$2 ~ /^(stable|oldstable|testing|unstable|sid)$/ && (" " $3 " ") ~ / main / { print $1; exit }' <<<"$entries")
  fi
  [ -n "$uri" ] || die "found no Debian mirror for '${codename:-?}' (component main) in the apt sources; set GILSTAT_DEBIAN_MIRROR=URI"
  printf '%s\n' "${uri%/}"
}

# Private apt configuration: own sources list, preferences, state (with an empty dpkg
# status, so the machine's installed packages do not influence resolution) and cache.
# The machine's apt.conf.d (proxies etc.) still applies, except its update/dpkg hooks
# (they would act on the machine's state) and a disabled package cache (docker images
# turn it off; without it every apt-cache call re-parses all lists, seconds each; the
# source cache stays off: it would only double the size).
apt_opts=()
setup_private_apt() {   # setup_private_apt LINE...   (sources.list lines)
  mkdir -p "$aptdir/state/lists/partial" "$aptdir/cache/archives/partial"
  : >>"$aptdir/state/status"
  cat >"$aptdir/apt.conf" <<'CONF'
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
Dir::Cache::pkgcache "pkgcache.bin";
Dir::Cache::srcpkgcache "";
CONF
  printf '%s\n' "$@" >"$aptdir/sources.list.new"
  if cmp -s "$aptdir/sources.list.new" "$aptdir/sources.list"; then
    rm -f "$aptdir/sources.list.new"
  else
    mv "$aptdir/sources.list.new" "$aptdir/sources.list"
  fi
  apt_opts=(
    -c "$aptdir/apt.conf"
    -o "Dir::Etc::SourceList=$aptdir/sources.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null
    -o Dir::Etc::PreferencesParts=/dev/null
    -o "Dir::State=$aptdir/state"
    -o "Dir::State::status=$aptdir/state/status"
    -o "Dir::Cache=$aptdir/cache"
    -o Debug::NoLocking=1
    -o Acquire::Languages=none
    -o APT::Get::List-Cleanup=1
  )
  # As root, apt would hand the download to the _apt user, who cannot write to a cache
  # under /root; the private folders are ours, so download as ourselves.
  if [ "$(id -u)" -eq 0 ]; then
    apt_opts+=(-o APT::Sandbox::User=root)
  fi
}

# One `apt-get update` against the private sources. A suite that the mirror does not
# serve only produces a warning here; the versions it would provide are skipped later.
apt_update_ok=0
private_apt_update() {
  say "apt-get update (private lists in $aptdir)"
  apt_update_ok=1
  apt-get "${apt_opts[@]}" -q update >"$aptdir/update.log" 2>&1 || apt_update_ok=0
  if grep -qE '^(E|W):' "$aptdir/update.log"; then
    apt_update_ok=0
    say "apt-get update: some suites could not be fetched (versions they serve are skipped):"
    grep -E '^(E|W):' "$aptdir/update.log" | sed 's/^/    /' >&2
  fi
}

keyring_opt() {
  if [ -r /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    printf '[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] '
  fi
}

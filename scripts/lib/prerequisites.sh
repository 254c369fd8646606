# Sourced by the scripts that build: installs missing Debian packages and finds Swift.

# install_missing WHO PACKAGE…: apt-get installs the packages that are not installed yet.
install_missing() {
  local who="$1"; shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "$who: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# require_swift WHO: puts the toolchain on PATH, or exits saying it is missing.
require_swift() {
  if ! command -v swift >/dev/null 2>&1; then
    for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
  fi
  command -v swift >/dev/null 2>&1 || { echo "$1: Swift 6 is required (swift not found on PATH)" >&2; exit 1; }
}

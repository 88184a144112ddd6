# Sourced by the fetch scripts: a private apt configuration for the release's
# backports suite (its own sources, state and cache folders under $1), whose
# mirror is the one this machine's own apt sources use for the release —
# never an address written into the repository.  Sets the array `apt` to the
# options that select it, and runs `apt-get update` on it.
#   . scripts/apt-backports.sh "$cache/apt-backports"
# Fails, saying why, when no source of this machine names the release.
backports_apt() {
    local dir=$1 codename uri keyring
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || { echo "apt-backports: /etc/os-release names no VERSION_CODENAME" >&2; return 1; }
    # The first main-archive entry for the release: deb822 files (Types/URIs/Suites/Signed-By stanzas), then
    # one-line sources.  Security and -updates suites do not serve backports, so only the bare codename counts.
    read -r uri keyring < <(
        awk -v want="$codename" '
            function flush() { if (uri != "" && suites ~ ("(^| )" want "( |$)") && types ~ /deb( |$)/ && !done) { print uri, (key == "" ? "-" : key); done = 1 } uri = ""; suites = ""; types = ""; key = "" }
            /^[[:space:]]*$/ { flush(); next }
            /^Types:/ { types = substr($0, 7) }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { suites = substr($0, 8) }
            /^Signed-By:/ { key = $2 }
            END { flush() }' /etc/apt/sources.list.d/*.sources 2>/dev/null
        sed -n 's/^[[:space:]]*deb[[:space:]]\+//p' /etc/apt/sources.list 2>/dev/null | awk -v want="$codename" '{
            key = "-"
            if ($1 ~ /^\[/) {  # [ options ]: keep signed-by, skip to the closing bracket
                while (NF > 0) { if ($1 ~ /signed-by=/) { key = $1; sub(/.*signed-by=/, "", key); sub(/\]$/, "", key) } done = ($1 ~ /\]$/); $1 = ""; $0 = $0; if (done) break }
            }
            if ($2 == want) { print $1, key; exit }
        }'
    ) || true
    [ -n "${uri:-}" ] || { echo "apt-backports: no apt source of this machine names $codename (looked in /etc/apt/sources.list and /etc/apt/sources.list.d/*.sources)" >&2; return 1; }
    [ "$keyring" != "-" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$dir/sources" "$dir/state/lists/partial" "$dir/cache/archives/partial"
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: %s\n' "$uri" "$codename" "$keyring" \
        > "$dir/sources/backports.sources"
    apt=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$dir/sources" -o APT::Sandbox::User=root
         -o "Dir::State=$dir/state" -o "Dir::Cache=$dir/cache")
    apt-get "${apt[@]}" update -qq >/dev/null || { echo "apt-backports: apt-get update of $uri $codename-backports failed" >&2; return 1; }
}

# Shared by compare.sh and scale.sh; sourced, not run. Expects `die` to be defined.

# The arc binary to measure: $ARC if set, else a release build of the repository at $1.
find_arc() {
    local arc=${ARC:-}
    if [[ -z $arc ]]; then
        (cd "$1" && cargo build --release --quiet)
        arc=$1/target/release/arc
    fi
    arc=$(command -v "$arc") || die "ARC=$arc is not a program"
    realpath "$arc"
}

# A fresh scratch directory under $1 for the script named $2; the caller removes it on exit.
make_work() {
    mktemp -d "$1/arc-$2.XXXXXX"
}

#!/bin/sh
# Builds mumail's RPMs from this source tree: packaging/rpm/build.sh OUTDIR
# [rpmbuild options...].  The tarball holds the source files (not target/);
# cargo builds into $CARGO_TARGET_DIR (default: this tree's target/), so a
# release build already made here is reused.
set -eu
out=${1:?usage: packaging/rpm/build.sh outdir [rpmbuild options]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^Version: *//p' packaging/rpm/mumail.spec)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
mkdir -p "$top/SOURCES"
# The tracked and new files of a git checkout, else the tree without build
# output.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z -c -o --exclude-standard |
    tar --null -T - --transform "s,^,mumail-$version/," -czf "$top/SOURCES/mumail-$version.tar.gz"
else
  tar --exclude=./target --exclude=./tests/fuzz/target --exclude=./.git \
    --transform "s,^\\.,mumail-$version," -czf "$top/SOURCES/mumail-$version.tar.gz" .
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The spec builds offline (as RHEL build hosts do): the crates of
# Cargo.lock must be in cargo's cache first.
cargo fetch --locked
# rpm's build scripts (brp-compress) need bash; Debian's /bin/sh is dash.
rpmbuild -bb --define "_topdir $top" --define "_buildshell /bin/bash" \
  --define "__brp_compress /bin/bash %{_rpmconfigdir}/brp-compress %{?_prefix}" --define "_rpmdir $out" "$@" packaging/rpm/mumail.spec

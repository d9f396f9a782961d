#!/bin/bash
# Build the .deb or the .rpm from a clean export of one commit (default HEAD), never
# from the working tree: `git archive` into a temporary directory, build there, copy
# the package into dist/. Reproducible: SOURCE_DATE_EPOCH is the commit's time, so
# the same commit gives byte-identical packages.
#
#   packaging/build.sh deb|rpm [REF]      (REF also from $PACKAGE_REF; output dir $DIST_DIR)
set -euo pipefail

die() { echo "build.sh: error: $*" >&2; exit 2; }

kind=${1:-}
[[ $kind == deb || $kind == rpm ]] || die "usage: packaging/build.sh deb|rpm [REF]"
ref=${2:-${PACKAGE_REF:-HEAD}}
root=$(cd "$(dirname "$0")/.." && pwd)
outdir=${DIST_DIR:-$root/dist}
commit=$(git -C "$root" rev-parse --verify -q "$ref^{commit}") || die "no commit $ref"
SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct "$commit")
export SOURCE_DATE_EPOCH TZ=UTC LC_ALL=C.UTF-8
# Distribution packages build with the distribution's tools and python3, never a
# venv's or pyenv's that happen to be first on PATH.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE

show() { git -C "$root" show "$commit:$1" 2>/dev/null || die "$1 is not in commit $ref"; }
version=$(show pacestack/__init__.py | sed -n 's/^__version__ = "\(.*\)"$/\1/p')
[[ -n $version ]] || die "no __version__ in pacestack/__init__.py at $ref"
# The packaging must describe the version the code says it is.
deb_version=$(show packaging/debian/changelog | sed -n '1s/^pacestack (\([^)]*\)).*/\1/p')
[[ ${deb_version%-*} == "$version" ]] \
    || die "packaging/debian/changelog is at ${deb_version%-*}, pacestack is $version"
rpm_version=$(show packaging/rpm/pacestack.spec | sed -n 's/^Version:[[:space:]]*//p')
[[ $rpm_version == "$version" ]] \
    || die "packaging/rpm/pacestack.spec is at $rpm_version, pacestack is $version"

work=$(mktemp -d "${TMPDIR:-/tmp}/pacestack-$kind.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$outdir"
log=$work/build.log
fail() { tail -n 40 "$log" >&2; die "$kind build failed (last lines above)"; }

if [[ $kind == deb ]]; then
    src=$work/pacestack-$version
    mkdir "$src"
    git -C "$root" archive "$commit" | tar -x -C "$src"
    cp -a "$src/packaging/debian" "$src/debian"
    (cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1 || fail
    out=("$work"/pacestack_"$deb_version"_all.deb)
else
    mkdir -p "$work"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
    git -C "$root" archive --format=tar.gz --prefix="pacestack-$version/" \
        -o "$work/SOURCES/pacestack-$version.tar.gz" "$commit"
    show packaging/rpm/pacestack.spec >"$work/SPECS/pacestack.spec"
    # On a host whose rpm database does not hold the build dependencies (Debian),
    # rpmbuild cannot check them: the build itself proves they are there.
    nodeps=()
    rpm -q rpm >/dev/null 2>&1 || nodeps=(--nodeps)
    rpmbuild -bb "${nodeps[@]}" \
        --define "_topdir $work" \
        --define "_buildhost reproducible" \
        --define "packager $(show packaging/debian/control | sed -n 's/^Maintainer: //p')" \
        --define "use_source_date_epoch_as_buildtime 1" \
        --define "clamp_mtime_to_source_date_epoch 1" \
        "$work/SPECS/pacestack.spec" >"$log" 2>&1 || fail
    out=("$work"/RPMS/noarch/pacestack-"$version"-*.noarch.rpm)
fi
[[ -f ${out[0]} ]] || fail
cp "${out[0]}" "$outdir/"
echo "$outdir/$(basename "${out[0]}")"

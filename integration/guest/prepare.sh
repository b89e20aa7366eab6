#!/bin/bash
# prepare.sh: make (and cache) a Linux kernel and a busybox initramfs for the
# guest test (integration/guest_test.go).
#
# The kernel comes from Debian's linux-image-*-cloud-amd64 package, fetched
# with `apt-get download` and unpacked with `dpkg-deb -x` (nothing is
# installed). The initramfs holds a static busybox, the virtio and vfat
# modules that kernel needs, and init.sh as /init. See guest/init.sh for what
# the guest does.
#
# Cache: ${GITBLK_TEST_CACHE:-$HOME/.cache/gitblk-test}/guest-<key>, where the
# key covers this script, init.sh and the kernel package version.
#
# Output on success (stdout, last two lines):
#   kernel=/path/to/vmlinuz
#   initrd=/path/to/initramfs.cpio.gz
# Exit status: 0 ready; 3 the kernel package cannot be fetched (the test skips
# on it, saying so); any other non-zero: a real failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${GITBLK_TEST_CACHE:-${HOME:-/tmp}/.cache/gitblk-test}
# Modules in load order; each one that modules.builtin lists is skipped.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk fat vfat nls_cp437 nls_utf8)

log() { echo "prepare.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in apt-get apt-cache dpkg-deb cpio gzip flock sha256sum; do
	command -v "$tool" >/dev/null || die "$tool not found (Debian packages: apt, dpkg, cpio, gzip, util-linux, coreutils)"
done

mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
flock 9

# The versioned kernel package the cloud metapackage points at.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1 || true)
if [ -z "$kpkg" ]; then
	# Package lists may be missing on a fresh machine: refresh once (needs root).
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq >&2 || true
		kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1 || true)
	fi
fi
if [ -z "$kpkg" ]; then
	log "no linux-image-*-cloud-amd64 package known to apt (apt-cache depends linux-image-cloud-amd64 found nothing)"
	exit 3
fi
kver=$(apt-cache policy "$kpkg" | sed -n 's/^ *Candidate: //p')

key=$(cat "${BASH_SOURCE[0]}" "$here/init.sh" <(echo "$kpkg $kver") | sha256sum | cut -c1-16)
out="$cache_root/guest-$key"
if [ -f "$out/ready" ]; then
	echo "kernel=$out/vmlinuz"
	echo "initrd=$out/initramfs.cpio.gz"
	exit 0
fi

work=$(mktemp -d "$cache_root/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "fetching $kpkg $kver"
if ! (cd "$work" && apt-get download -q "$kpkg" >&2 2>"$work/apt.err"); then
	cat "$work/apt.err" >&2
	log "cannot fetch the kernel package $kpkg"
	exit 3
fi
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/k"
kernels=("$work"/k/boot/vmlinuz-*)
vmlinuz=${kernels[0]}
[ -f "$vmlinuz" ] || die "no boot/vmlinuz-* in $kpkg"
moddirs=("$work"/k/lib/modules/*)
moddir=${moddirs[0]}
[ -d "$moddir" ] || die "no lib/modules/VERSION in $kpkg"

# A static busybox: the installed one if it is static, else from the package.
busybox=
for cand in /bin/busybox /usr/bin/busybox; do
	if [ -x "$cand" ] && ! ldd "$cand" >/dev/null 2>&1; then busybox=$cand; break; fi
done
if [ -z "$busybox" ]; then
	(cd "$work" && apt-get download -q busybox-static >&2) || die "no static busybox (install Debian package busybox-static)"
	dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"
	busybox="$work/bb/bin/busybox"
fi

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,mnt,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"

# Copy each module that is not built in, decompressed (busybox insmod reads
# plain .ko files), and record the load order for init.
: >"$root/lib/modules/load"
for m in "${modules[@]}"; do
	if grep -q "/$m\.ko\(\.[a-z]*\)\?$" "$moddir/modules.builtin"; then
		log "$m: built in"
		continue
	fi
	f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n1)
	[ -n "$f" ] || die "module $m is neither built in nor shipped in $kpkg"
	case "$f" in
	*.ko) cp "$f" "$root/lib/modules/$m.ko" ;;
	*.ko.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$root/lib/modules/$m.ko" ;;
	esac
	# Every dependency must be loaded earlier or be built in.
	deps=$(tr '\0' '\n' <"$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n1)
	for d in ${deps//,/ }; do
		[ -f "$root/lib/modules/$d.ko" ] || grep -q "/$d\.ko" "$moddir/modules.builtin" ||
			die "module $m depends on $d, which is not earlier in the load list"
	done
	echo "$m" >>"$root/lib/modules/load"
done

mkdir -p "$work/out"
cp "$vmlinuz" "$work/out/vmlinuz"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/out/initramfs.cpio.gz"
touch "$work/out/ready"
rm -rf "$out"
mv "$work/out" "$out"
# Drop guests made by older versions of this script or kernel.
for old in "$cache_root"/guest-*; do
	[ "$old" = "$out" ] || rm -rf "$old"
done
log "cached in $out"
echo "kernel=$out/vmlinuz"
echo "initrd=$out/initramfs.cpio.gz"

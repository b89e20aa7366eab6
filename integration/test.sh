#!/usr/bin/env bash
# The test command (README "Testing"): installs the tools the tests drive
# when they are missing (Debian packages, needs root), then checks formatting
# and vet, and runs every test with the race detector.
# Usage: integration/test.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
need=(
	"git git"
	"bsdtar libarchive-tools"
	"fsck.fat dosfstools"
	"mcopy mtools"
	"nbdinfo libnbd-bin"
	"nbdsh python3-libnbd"
	"nbd-client nbd-client"
	"setpriv util-linux"
	"qemu-img qemu-utils"
	"fusermount3 fuse3"
	"nbdkit nbdkit"
	"fio fio"
	"qemu-system-x86_64 qemu-system-x86"
	"busybox busybox-static"
	"cpio cpio"
	"losetup mount"
	"systemd-analyze systemd"
	"shellcheck shellcheck"
	"age age"
	"openssl openssl"
	"ssh-keygen openssh-client"
)
missing=()
for pair in "${need[@]}"; do
	read -r cmd pkg <<<"$pair"
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("$pkg")
done
# gitblk inflates with C zlib and libdeflate (cgo): the build needs their
# headers (and libdeflate.a, linked in).
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -f /usr/include/libdeflate.h ] || missing+=(libdeflate-dev)
# The hotplug tests run block-gitblk beside Xen's own scripts.
[ -f /etc/xen/scripts/block-common.sh ] || missing+=(xen-utils-common)
if [ "${#missing[@]}" -gt 0 ]; then
	echo "installing: ${missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		echo "test.sh: missing packages and not root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nbdsh must be Debian's python with python3-libnbd, not a pyenv one.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
# The pure-Go build (CGO_ENABLED=0 or -tags purego) inflates with
# compress/zlib: it must build, and the object readers must pass with it.
CGO_ENABLED=0 go build -o /dev/null ./cmd/gitblk
go vet -tags purego ./gitfs
go test -count=1 -tags purego ./gitfs
go test -race -count=1 -timeout 40m "$@" ./...

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
# gitblk builds with Go alone and loads libz.so.1 (zlib1g, always there)
# and libdeflate.so.0 at run time (internal/inflate); the tests check that
# both load.
[[ $(PATH=/usr/sbin:/sbin:$PATH ldconfig -p) == *libdeflate.so.0* ]] || missing+=(libdeflate0)
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
# A build without cgo still loads the C inflaters (purego): it must build
# and its inflaters pass; and the object readers must pass with Go's
# compress/zlib forced, the inflater of a system without the libraries.
CGO_ENABLED=0 go build -o /dev/null ./cmd/gitblk
CGO_ENABLED=0 go test -count=1 ./internal/inflate
GITBLK_INFLATE=go go test -count=1 ./gitfs/...
go test -race -count=1 -timeout 40m "$@" ./...

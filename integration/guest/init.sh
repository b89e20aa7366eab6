#!/bin/busybox sh
# /init of the guest test's initramfs (made by prepare.sh).
#
# Loads the modules listed in /lib/modules/load, then reads /dev/vda as the
# kernel command line says:
#   gitblk.mode=fat  mount /dev/vda read-only as vfat (utf8 names)
#   gitblk.mode=tar  extract /dev/vda with busybox tar into a tmpfs
# and prints, between the marker lines, one line per regular file:
#   <sha256 hex>  ./<path>
# With gitblk.mode2=fat|tar it then reads /dev/vdb the same way, in a second
# block of marker lines (a guest with a data disk and a secret disk).
# A failure prints "GITBLK-ERROR: <what>" before the end marker. Then it
# powers off (with -no-reboot, a kernel panic also ends QEMU).

/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# Keep kernel messages off the console while the results are printed.
echo 1 >/proc/sys/kernel/printk

fail() {
	echo "GITBLK-ERROR: $*"
	echo "==GITBLK-END=="
	poweroff -f
}

mode=
mode2=
# shellcheck disable=SC2013 # words, not lines, are wanted
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	gitblk.mode=*) mode=${arg#gitblk.mode=} ;;
	gitblk.mode2=*) mode2=${arg#gitblk.mode2=} ;;
	esac
done

# shellcheck disable=SC2013 # one module name per line, no spaces
for m in $(cat /lib/modules/load); do
	insmod "/lib/modules/$m.ko" || fail "insmod $m"
done

# readdisk DEV MODE DIR prints the block of marker lines for one disk.
readdisk() {
	# The virtio disk shows up asynchronously after virtio_blk loads.
	i=0
	while [ ! -b "/dev/$1" ]; do
		i=$((i + 1))
		[ "$i" -gt 100 ] && fail "no /dev/$1 after 10 s"
		sleep 0.1
	done
	mkdir -p "$3"
	echo "==GITBLK-BEGIN mode=$2=="
	case "$2" in
	fat)
		mount -t vfat -o ro,iocharset=utf8,shortname=mixed "/dev/$1" "$3" || fail "mount vfat /dev/$1"
		cd "$3" || fail "cd $3"
		;;
	tar)
		mount -t tmpfs -o size=400m tmpfs "$3" || fail "mount tmpfs"
		cd "$3" || fail "cd $3"
		tar -xf "/dev/$1" || fail "tar -xf /dev/$1"
		;;
	*)
		fail "unknown mode '$2' for /dev/$1 (want fat or tar)"
		;;
	esac
	find . -type f -exec sha256sum {} + || fail "sha256sum"
	echo "==GITBLK-END=="
	cd /
}

readdisk vda "$mode" /mnt
[ -n "$mode2" ] && readdisk vdb "$mode2" /mnt2
sync
poweroff -f

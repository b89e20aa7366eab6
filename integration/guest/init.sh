#!/bin/busybox sh
# /init of the guest test's initramfs (made by prepare.sh).
#
# Loads the modules listed in /lib/modules/load, then reads /dev/vda as the
# kernel command line says:
#   gitblk.mode=fat  mount /dev/vda read-only as vfat (utf8 names)
#   gitblk.mode=tar  extract /dev/vda with busybox tar into a tmpfs
# and prints, between the marker lines, one line per regular file:
#   <sha256 hex>  ./<path>
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
# shellcheck disable=SC2013 # words, not lines, are wanted
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	gitblk.mode=*) mode=${arg#gitblk.mode=} ;;
	esac
done

# shellcheck disable=SC2013 # one module name per line, no spaces
for m in $(cat /lib/modules/load); do
	insmod "/lib/modules/$m.ko" || fail "insmod $m"
done

# The virtio disk shows up asynchronously after virtio_blk loads.
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	[ "$i" -gt 100 ] && fail "no /dev/vda after 10 s"
	sleep 0.1
done

echo "==GITBLK-BEGIN mode=$mode=="
case "$mode" in
fat)
	mount -t vfat -o ro,iocharset=utf8,shortname=mixed /dev/vda /mnt || fail "mount vfat /dev/vda"
	cd /mnt || fail "cd /mnt"
	;;
tar)
	mount -t tmpfs -o size=400m tmpfs /mnt || fail "mount tmpfs"
	cd /mnt || fail "cd /mnt"
	tar -xf /dev/vda || fail "tar -xf /dev/vda"
	;;
*)
	fail "unknown gitblk.mode '$mode' (want fat or tar)"
	;;
esac
find . -type f -exec sha256sum {} + || fail "sha256sum"
echo "==GITBLK-END=="
cd /
sync
poweroff -f

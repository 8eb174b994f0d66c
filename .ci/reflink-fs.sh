#!/usr/bin/env bash
# Mounts a small XFS file system with reflink=1 on a loop device and prints its mount point.
# Needs root and xfsprogs. Idempotent: an existing mount is reused.
# Usage: .ci/reflink-fs.sh [MOUNTPOINT] [SIZE]
set -euo pipefail
mnt=${1:-/mnt/envstore-reflink}
size=${2:-2G}
img=${mnt%/}.img
if mountpoint -q "$mnt"; then
  echo "$mnt"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "reflink-fs: must run as root to mount a loop file system" >&2
  exit 1
fi
command -v mkfs.xfs >/dev/null || { echo "reflink-fs: install xfsprogs" >&2; exit 1; }
mkdir -p "$mnt"
rm -f "$img"
truncate -s "$size" "$img"
mkfs.xfs -q -m reflink=1 "$img"
mount -o loop "$img" "$mnt"
chmod 1777 "$mnt"
echo "$mnt"

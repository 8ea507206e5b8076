# Sourced by the template scripts (build-*-template.sh); uses their log function.
# install_rootfs DEST CACHE_DIR: DEST/rootfs becomes a private copy of CACHE_DIR/rootfs, unless it already
# is one. Private per templates dir because cubed shifts the copy's owners in place to the sandbox uid
# range; sharing inodes with the cache (symlinks or hard links) would shift the cache too. The swap keeps
# a complete rootfs in place until the new one is whole.
install_rootfs() {
	local dest=$1 cache_dir=$2
	mkdir -p "$dest"
	if [ -f "$dest/.source" ] && [ "$(cat "$dest/.source")" = "$cache_dir" ] && [ -d "$dest/rootfs" ]; then
		log "template $dest is up to date"
		return 0
	fi
	log "installing $dest/rootfs"
	rm -rf --one-file-system "$dest/rootfs.new"
	cp -a --reflink=auto "$cache_dir/rootfs" "$dest/rootfs.new"
	[ ! -d "$dest/rootfs" ] || mv "$dest/rootfs" "$dest/rootfs.old"
	mv "$dest/rootfs.new" "$dest/rootfs"
	rm -f "$dest/.shifted"  # the new copy is unshifted again (see image/rootfs_shift.c)
	rm -rf --one-file-system "$dest/rootfs.old"
	echo "$cache_dir" >"$dest/.source"
}

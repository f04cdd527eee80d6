// Package powerfs is a filesystem that can lose what was not synced: a
// node's data directory mounted on it survives a SIGKILL as on a real disk
// (the page cache survives a process), and [Disk.LoseUnsynced] then does
// what a power cut does to the page cache. A kill alone cannot show that a
// store acknowledges writes before they are durable; this can. The idea is
// LazyFS's (Ramos et al., PVLDB 17(11), 2024), which Jepsen mounts under
// its databases for the same purpose; the code is our own.
//
// # Shape
//
// [Mount] moves a directory's files to <dir>.disk/live and serves that
// tree at <dir> through FUSE (github.com/hanwen/go-fuse/v2's loopback,
// with every operation that changes durable state intercepted). Reads and
// writes go to the live tree at once, so the store reads what it wrote
// and a correct store runs as it would on the bare directory. Beside it, a
// tracker keeps in memory what a power cut would take back:
//
//   - per file, its size at its last fsync and the durable bytes every
//     write, truncate or fallocate has overwritten since (an undo log):
//     bytes past the synced size were never durable and cost nothing to
//     write, so a log that appends and fsyncs keeps no copies at all;
//   - per directory, its entries as of its last fsync (name → inode, type,
//     a symlink's target);
//   - grave/: an inode a durable entry still names, whose live name was
//     unlinked, renamed over or rmdir'ed, is moved or hard-linked there
//     instead of being freed, so that the cut can bring it back (and its
//     inode number is not reused meanwhile).
//
// LoseUnsynced unmounts, rolls every file back (cut or extended to its
// synced size, saved extents written back newest first), builds the tree
// the durable directory entries describe beside the live one out of hard
// links to the surviving inodes, swaps it in, and mounts again. After it
// everything is durable, as after a fresh Mount. Unmounting for it is
// deliberate: the kernel's and go-fuse's caches of names and attributes
// are thrown away with the mount, so nothing stale survives the cut.
//
// # What is durable (the model)
//
//   - File data and size: durable when fsync or fdatasync returns on any
//     descriptor of the file, or when a write through a descriptor opened
//     with O_SYNC or O_DSYNC returns. fdatasync counts as fsync: it must
//     make the size durable for the data to be readable, and the model
//     keeps no timestamps or permissions to tell them apart. Unsynced
//     writes, truncates (O_TRUNC included), and fallocate modes that
//     change bytes (punch hole, zero, collapse, insert range) are undone
//     as a whole; a file created and never synced is empty.
//   - Names: a create, mkdir, link, symlink, rename or unlink is durable
//     only once the directory it changed is fsynced (both directories of
//     a rename, each for its own side: a rename made durable in its
//     target only leaves the file under both names, like a hard link).
//     fsync of a file does not make its name durable, as POSIX says,
//     even though ext4 would usually have. A directory not durable in its
//     parent vanishes with everything below it.
//   - O_APPEND: the kernel turns an append into a write at the end of the
//     file it knows, so the model sees a plain write at that offset.
//   - Not modelled: reordered or torn writes inside the disk (a cut keeps
//     exactly the synced state, never a mix), a lying or failing fsync,
//     sync(2) and syncfs(2) (FUSE does not forward them: a store relying
//     on them is judged to have lost its data), sync_file_range (never
//     sent to FUSE), O_DIRECT (writes are as any others: not durable
//     before fsync), shared writable mmap (dirty pages count as written
//     when the kernel writes them back to the server), timestamps,
//     permissions and xattrs (xattrs are refused). copy_file_range and
//     O_TMPFILE are refused, so callers fall back to plain writes and
//     named files.
//
// # Processes, goroutines and mounts
//
// The FUSE server runs in the process that calls Mount (the harness), not
// in the node process using the directory: a SIGKILLed node must not take
// its filesystem down with it. go-fuse's server goroutines belong to the
// Disk; unmounting ends them. As root the mount is a direct mount(2);
// otherwise go-fuse uses fusermount3. If the process serving a mount dies
// (a harness killed by SIGKILL), the kernel aborts the connection and the
// mountpoint answers ENOTCONN: [Sweep], which the next run calls before it
// starts anything, detaches every powerfs mount whose server is gone. The
// mount's source in /proc/mounts is "chainraft-powerfs-<pid>" so that a
// sweep never touches a mount another live harness serves.
//
// # Costs
//
// Every write crosses into the harness process and back (FUSE without a
// writeback cache, so that the kernel holds no dirty data the server has
// not seen); overwriting synced bytes also reads them first; and the undo
// log holds those bytes in memory until the next fsync of the file.
// BenchmarkWrite measures the overhead; the README has the figures.
package powerfs

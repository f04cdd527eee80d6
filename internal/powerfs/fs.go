package powerfs

import (
	"bytes"
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is go-fuse's loopback node with every operation that changes what
// a power cut would keep reported to the tracker first. The operations it
// does not override (lookup, readdir, readlink, link, symlink, xattrs,
// statfs) are the loopback's: they change nothing the model tracks, or
// (link, symlink) only live directory entries, which a directory fsync
// snapshots.
type node struct {
	fs.LoopbackNode
	t *tracker
}

var (
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
)

// newRoot makes the loopback root over live whose nodes report to t.
func newRoot(live string, t *tracker) (fs.InodeEmbedder, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(live, &st); err != nil {
		return nil, err
	}
	r := &fs.LoopbackRoot{Path: live, Dev: uint64(st.Dev)}
	r.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, t: t}
	}
	root := r.NewNode(r, nil, "", &st)
	r.RootNode = root
	return root, nil
}

// path is the node's path in the live tree.
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

// child is the path of name in directory n.
func (n *node) child(name string) string { return filepath.Join(n.path(), name) }

// readWrite opens write-only files read-write in the live tree, so that
// the handle can read the bytes a write is about to overwrite.
func readWrite(flags uint32) uint32 {
	if flags&syscall.O_ACCMODE == syscall.O_WRONLY {
		flags = flags&^syscall.O_ACCMODE | syscall.O_RDWR
	}
	return flags
}

// pathReader reads a file by name (a truncate without a handle).
func pathReader(p string) (reader, func(), error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return fdReader(fd), func() { unix.Close(fd) }, nil
}

// truncateByName saves what truncating the regular file p to size cuts.
func (n *node) truncateByName(p string, size int64) syscall.Errno {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0 // the operation itself reports it
	}
	r, done, err := pathReader(p)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer done()
	return fs.ToErrno(n.t.truncate(st.Ino, r, size, func() error { return nil }))
}

// Create implements fs.NodeCreater: a new file has no durable content; an
// existing one opened with O_TRUNC loses its content only as unsynced.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	p := n.child(name)
	var st unix.Stat_t
	existed := unix.Lstat(p, &st) == nil
	if existed && flags&syscall.O_TRUNC != 0 && flags&syscall.O_EXCL == 0 {
		if errno := n.truncateByName(p, 0); errno != 0 {
			return nil, nil, 0, errno
		}
	}
	ch, fh, fflags, errno := n.LoopbackNode.Create(ctx, name, readWrite(flags), mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f, errno := n.wrap(fh, flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if !existed {
		n.t.created(f.ino)
	}
	return ch, f, fflags, 0
}

// Open implements fs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		if errno := n.truncateByName(n.path(), 0); errno != 0 {
			return nil, 0, errno
		}
	}
	fh, fflags, errno := n.LoopbackNode.Open(ctx, readWrite(flags))
	if errno != 0 {
		return nil, 0, errno
	}
	f, errno := n.wrap(fh, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return f, fflags, 0
}

// wrap puts the loopback's handle behind a file that reports to the
// tracker. The loopback file must not reach go-fuse unwrapped: running as
// root, go-fuse would hand its descriptor to the kernel (FUSE passthrough)
// and writes would bypass the tracker.
func (n *node) wrap(fh fs.FileHandle, flags uint32) (*file, syscall.Errno) {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		if r, ok := fh.(fs.FileReleaser); ok {
			r.Release(context.Background())
		}
		return nil, syscall.EIO
	}
	fd, _ := lf.PassthroughFd()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		lf.Release(context.Background())
		return nil, fs.ToErrno(err)
	}
	return &file{lf: lf, fd: fd, ino: st.Ino, t: n.t, sync: flags&syscall.O_DSYNC != 0}, 0
}

// OpendirHandle implements fs.NodeOpendirHandler: the handle reports
// directory fsyncs.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fflags, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &dir{inner: fh, n: n}, fflags, 0
}

// unwrap gives the loopback the handle it made.
func unwrap(f fs.FileHandle) fs.FileHandle {
	switch h := f.(type) {
	case *file:
		return h.lf
	case *dir:
		return h.inner
	}
	return f
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	return n.LoopbackNode.Getattr(ctx, unwrap(f), out)
}

// Setattr implements fs.NodeSetattrer: a size change (truncate, ftruncate,
// open with O_TRUNC without atomic_o_trunc) saves what it cuts.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if h, ok := f.(*file); ok {
			if err := n.t.truncate(h.ino, fdReader(h.fd), int64(size), func() error { return nil }); err != nil {
				return fs.ToErrno(err)
			}
		} else if errno := n.truncateByName(n.path(), int64(size)); errno != 0 {
			return errno
		}
	}
	return n.LoopbackNode.Setattr(ctx, unwrap(f), in, out)
}

// Mkdir implements fs.NodeMkdirer: a new directory has no durable entries.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		var st unix.Stat_t
		if err := unix.Lstat(n.child(name), &st); err == nil {
			n.t.mkdir(st.Ino)
		}
	}
	return ch, errno
}

// Mknod implements fs.NodeMknoder: a new regular file has no durable
// content.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno == 0 {
		var st unix.Stat_t
		if err := unix.Lstat(n.child(name), &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			n.t.created(st.Ino)
		}
	}
	return ch, errno
}

// Unlink implements fs.NodeUnlinker: a file a durable entry names moves to
// grave/ instead, so that a power cut can bring it back.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	moved, err := n.t.bury(n.child(name), true)
	if err != nil {
		return fs.ToErrno(err)
	}
	if moved {
		return 0
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

// Rmdir implements fs.NodeRmdirer, as Unlink.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	moved, err := n.t.bury(n.child(name), true)
	if err != nil {
		return fs.ToErrno(err)
	}
	if moved {
		return 0
	}
	return n.LoopbackNode.Rmdir(ctx, name)
}

// Rename implements fs.NodeRenamer: a target the rename replaces is kept
// in grave/ when a durable entry names it.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if np, ok := newParent.(*node); ok && flags&unix.RENAME_EXCHANGE == 0 {
		if _, err := n.t.bury(np.child(newName), false); err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

// CopyFileRange implements fs.NodeCopyFileRanger by refusing: the
// loopback's would write behind the tracker's back. The kernel falls back
// to reads and writes.
func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Tmpfile implements fs.NodeTmpfiler by refusing (O_TMPFILE callers fall
// back to named files): the loopback cannot link an unnamed file into a
// directory anyway.
func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// file is an open file whose writes, fallocates and fsyncs report to the
// tracker. It deliberately does not implement fs.FilePassthroughFder.
type file struct {
	lf   *fs.LoopbackFile
	fd   int
	ino  uint64
	t    *tracker
	sync bool // opened O_SYNC or O_DSYNC: every write is durable when it returns
}

// Read implements fs.FileReader.
func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

// Write implements fs.FileWriter. O_APPEND needs nothing here: the kernel
// turns an append into a write at the end it knows, which is the offset.
func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	var n uint32
	var errno syscall.Errno
	err := f.t.write(f.ino, fdReader(f.fd), off, int64(len(data)), func() error {
		n, errno = f.lf.Write(ctx, data, off)
		return nil
	})
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	if errno == 0 && f.sync {
		f.t.synced(f.ino)
	}
	return n, errno
}

// Writev implements fs.FileWritever: go-fuse hands over a write split
// into several slices this way, and a handle without it would refuse them.
func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	return f.Write(ctx, bytes.Join(data, nil), off)
}

// Fsync implements fs.FileFsyncer: fsync and fdatasync both make the
// file's data and size durable (fdatasync must, for the data to be
// readable); the loopback's real fsync keeps the cost honest.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if errno := f.lf.Fsync(ctx, flags); errno != 0 {
		return errno
	}
	f.t.synced(f.ino)
	return 0
}

// Allocate implements fs.FileAllocater: plain allocation (mode 0 or
// FALLOC_FL_KEEP_SIZE) changes no byte a reader sees; punching, zeroing,
// collapsing or inserting may change any byte from off on, so those are
// saved first.
func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	var errno syscall.Errno
	do := func() error { errno = f.lf.Allocate(ctx, off, size, mode); return nil }
	var err error
	if mode&^unix.FALLOC_FL_KEEP_SIZE == 0 {
		err = do()
	} else {
		err = f.t.truncate(f.ino, fdReader(f.fd), int64(off), do)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	return errno
}

// Setattr implements fs.FileSetattrer; the node's Setattr saved what a
// size change cuts.
func (f *file) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Setattr(ctx, in, out)
}

// Getattr implements fs.FileGetattrer.
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}

// Lseek implements fs.FileLseeker.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

// Flush implements fs.FileFlusher.
func (f *file) Flush(ctx context.Context) syscall.Errno { return f.lf.Flush(ctx) }

// Release implements fs.FileReleaser.
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }

// Getlk implements fs.FileGetlker (stores lock their files: etcd does).
func (f *file) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return f.lf.Getlk(ctx, owner, lk, flags, out)
}

// Setlk implements fs.FileSetlker.
func (f *file) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlk(ctx, owner, lk, flags)
}

// Setlkw implements fs.FileSetlkwer.
func (f *file) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return f.lf.Setlkw(ctx, owner, lk, flags)
}

// dir is an open directory whose fsync makes its entries durable.
type dir struct {
	inner fs.FileHandle
	n     *node
}

// Fsyncdir implements fs.FileFsyncdirer.
func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	if fd, ok := d.inner.(fs.FileFsyncdirer); ok {
		if errno := fd.Fsyncdir(ctx, flags); errno != 0 {
			return errno
		}
	}
	p := d.n.path()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fs.ToErrno(err)
	}
	return fs.ToErrno(d.n.t.syncDir(st.Ino, p))
}

// Readdirent implements fs.FileReaddirenter.
func (d *dir) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if r, ok := d.inner.(fs.FileReaddirenter); ok {
		return r.Readdirent(ctx)
	}
	return nil, syscall.ENOTSUP
}

// Seekdir implements fs.FileSeekdirer.
func (d *dir) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if s, ok := d.inner.(fs.FileSeekdirer); ok {
		return s.Seekdir(ctx, off)
	}
	return syscall.ENOTSUP
}

// Releasedir implements fs.FileReleasedirer.
func (d *dir) Releasedir(ctx context.Context, flags uint32) {
	if r, ok := d.inner.(fs.FileReleasedirer); ok {
		r.Releasedir(ctx, flags)
	}
}

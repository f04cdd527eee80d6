package powerfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// dentry is one directory entry as the disk holds it durably: the inode it
// names (kept alive in grave/ once the live name is gone), its type and
// permissions, and a symlink's target (a symlink is recreated, not kept).
type dentry struct {
	ino    uint64
	mode   uint32
	target string
}

func (d dentry) isDir() bool     { return d.mode&unix.S_IFMT == unix.S_IFDIR }
func (d dentry) isSymlink() bool { return d.mode&unix.S_IFMT == unix.S_IFLNK }

// fileState is what a power cut would take back from one file: its size at
// its last fsync, and the durable bytes overwritten since, oldest first.
// Bytes past synced were never durable, so writes there save nothing: an
// append-only log costs no copying at all.
type fileState struct {
	synced int64
	undo   []extent
}

// extent is a byte range's content before a write, a truncate or a
// fallocate changed it.
type extent struct {
	off  int64
	data []byte
}

// tracker is the model of what a disk holds durably, next to the live tree
// that every read and write goes to. Its invariants:
//
//   - every inode a durable directory entry names has a live name, or a
//     name in grave/ (so it is neither freed nor its number reused);
//   - a file's durable content is its live content with its undo extents
//     applied newest first, cut or extended to synced; a file with no
//     fileState is durable as it is;
//   - a directory's durable entries are dirs[its inode]; the root is
//     always there.
//
// Every method takes mu; the FUSE server calls them from its goroutines.
type tracker struct {
	live, grave string

	mu     sync.Mutex
	root   uint64
	files  map[uint64]*fileState
	dirs   map[uint64]map[string]dentry
	refs   map[uint64]int  // durable entries naming each inode
	graved map[uint64]bool // inodes with a name in grave/
	// undoBytes counts the bytes kept in undo extents, for Stats.
	undoBytes int64
}

func newTracker(live, grave string) (*tracker, error) {
	t := &tracker{live: live, grave: grave}
	if err := t.scan(); err != nil {
		return nil, err
	}
	return t, nil
}

// scan makes everything the live tree holds now durable: what a disk holds
// when it is mounted is what it has.
func (t *tracker) scan() error {
	t.files = map[uint64]*fileState{}
	t.dirs = map[uint64]map[string]dentry{}
	t.refs = map[uint64]int{}
	t.graved = map[uint64]bool{}
	t.undoBytes = 0
	var st unix.Stat_t
	if err := unix.Lstat(t.live, &st); err != nil {
		return fmt.Errorf("powerfs: %s: %w", t.live, err)
	}
	t.root = st.Ino
	t.refs[t.root] = 1
	var walk func(dir string, ino uint64) error
	walk = func(dir string, ino uint64) error {
		ents, err := readEntries(dir)
		if err != nil {
			return err
		}
		t.dirs[ino] = ents
		for name, e := range ents {
			t.ref(e, 1)
			if e.isDir() {
				if err := walk(filepath.Join(dir, name), e.ino); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(t.live, t.root)
}

// readEntries lists dir's entries as dentries.
func readEntries(dir string) (map[string]dentry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("powerfs: %w", err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("powerfs: %s: %w", dir, err)
	}
	out := make(map[string]dentry, len(names))
	for _, name := range names {
		p := filepath.Join(dir, name)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("powerfs: %s: %w", p, err)
		}
		d := dentry{ino: st.Ino, mode: st.Mode}
		if d.isSymlink() {
			if d.target, err = os.Readlink(p); err != nil {
				return nil, fmt.Errorf("powerfs: %w", err)
			}
		}
		out[name] = d
	}
	return out, nil
}

// ref counts a durable entry naming e's inode (symlinks are recreated from
// their target, so their inodes need not be kept).
func (t *tracker) ref(e dentry, delta int) {
	if e.isSymlink() {
		return
	}
	t.refs[e.ino] += delta
	if t.refs[e.ino] <= 0 {
		delete(t.refs, e.ino)
	}
}

// reader reads a file's current bytes for an undo extent: the handle's
// descriptor, or a descriptor opened on the path for a truncate by name.
type reader interface {
	size() (int64, error)
	readAt(b []byte, off int64) (int, error)
}

type fdReader int

func (r fdReader) size() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(r), &st); err != nil {
		return 0, err
	}
	return st.Size, nil
}

func (r fdReader) readAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(int(r), b[n:], off+int64(n))
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// file returns ino's state, making it on the first change since the file
// was last durable: its durable size is its size now.
func (t *tracker) file(ino uint64, r reader) (*fileState, error) {
	if st := t.files[ino]; st != nil {
		return st, nil
	}
	size, err := r.size()
	if err != nil {
		return nil, err
	}
	st := &fileState{synced: size}
	t.files[ino] = st
	return st, nil
}

// save keeps the durable bytes of [off, end) of ino before they change.
// Bytes past the file's current end read as nothing: a truncate that cut
// them saved them already.
func (t *tracker) save(ino uint64, r reader, off, end int64) error {
	st, err := t.file(ino, r)
	if err != nil {
		return err
	}
	end = min(end, st.synced)
	if off >= end {
		return nil
	}
	buf := make([]byte, end-off)
	n, err := r.readAt(buf, off)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	st.undo = append(st.undo, extent{off: off, data: buf[:n]})
	t.undoBytes += int64(n)
	return nil
}

// write runs do, a write of n bytes at off to ino, after saving the durable
// bytes it overwrites; the lock is held across both so that no fsync
// commits between them.
func (t *tracker) write(ino uint64, r reader, off, n int64, do func() error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.save(ino, r, off, off+n); err != nil {
		return err
	}
	return do()
}

// truncate runs do, which sets ino's size to size, after saving the
// durable bytes it cuts.
func (t *tracker) truncate(ino uint64, r reader, size int64, do func() error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.save(ino, r, size, 1<<62); err != nil {
		return err
	}
	return do()
}

// synced records that ino's data and size are durable (fsync, fdatasync,
// a write through O_SYNC or O_DSYNC).
func (t *tracker) synced(ino uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.files[ino]; st != nil {
		for _, e := range st.undo {
			t.undoBytes -= int64(len(e.data))
		}
		delete(t.files, ino)
	}
}

// created records a new file: none of its content is durable.
func (t *tracker) created(ino uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forget(ino)
	t.files[ino] = &fileState{}
}

// mkdir records a new directory: none of its entries is durable.
func (t *tracker) mkdir(ino uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dirs[ino] = map[string]dentry{}
}

// forget drops the state of an inode no durable entry names, whose number
// the filesystem may reuse.
func (t *tracker) forget(ino uint64) {
	if st := t.files[ino]; st != nil {
		for _, e := range st.undo {
			t.undoBytes -= int64(len(e.data))
		}
		delete(t.files, ino)
	}
}

// syncDir makes the entries of directory ino, at path, durable as they are
// now; inodes no durable entry names any more leave grave/.
func (t *tracker) syncDir(ino uint64, path string) error {
	ents, err := readEntries(path)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.dirs[ino]
	for _, e := range ents {
		t.ref(e, 1)
	}
	for _, e := range old {
		t.ref(e, -1)
	}
	t.dirs[ino] = ents
	var errs []error
	for _, e := range old {
		if t.refs[e.ino] == 0 && t.graved[e.ino] {
			if err := os.Remove(t.gravePath(e.ino)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			delete(t.graved, e.ino)
			if !e.isDir() {
				// Its last name may be gone: its number can be reused.
				t.forget(e.ino)
			}
		}
	}
	return errors.Join(errs...)
}

func (t *tracker) gravePath(ino uint64) string {
	return filepath.Join(t.grave, strconv.FormatUint(ino, 10))
}

// bury keeps the inode at path alive in grave/ if a durable entry names it
// and it is not kept yet: by renaming it there (move, for unlink and
// rmdir: the name is going anyway) or by a hard link (a rename's target,
// which the rename replaces). It reports whether path was moved.
func (t *tracker) bury(path string, move bool) (moved bool, err error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, nil // the operation itself will say what is wrong
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	keep := t.refs[st.Ino] > 0 && !t.graved[st.Ino] && st.Mode&unix.S_IFMT != unix.S_IFLNK
	if !keep {
		if !isDir && st.Nlink <= 1 && t.refs[st.Ino] == 0 && move {
			t.forget(st.Ino)
		}
		return false, nil
	}
	if isDir {
		// rmdir and a rename over a directory need it empty; so does
		// keeping it, as its live entries are not durable by being in it.
		f, err := os.Open(path)
		if err != nil {
			return false, err
		}
		names, err := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 {
			return false, unix.ENOTEMPTY
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		move = true
	}
	dst := t.gravePath(st.Ino)
	if move {
		err = os.Rename(path, dst)
	} else {
		err = os.Link(path, dst)
	}
	if err != nil {
		return false, err
	}
	t.graved[st.Ino] = true
	return move, nil
}

// drop throws away everything not durable: every file's content goes back
// to its last sync, and the tree is rebuilt from the durable directory
// entries. The filesystem must not be mounted (nothing may be using the
// live tree). Afterwards everything is durable again.
func (t *tracker) drop(backing string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Where each inode can be found now: its live names and its grave.
	paths := map[uint64]string{}
	for _, top := range []string{t.live, t.grave} {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || d.Type()&fs.ModeSymlink != 0 {
				return nil
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if _, ok := paths[st.Ino]; !ok {
				paths[st.Ino] = p
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("powerfs: drop: %w", err)
		}
	}
	// Contents, in inode order so that a failure is reproducible.
	inos := make([]uint64, 0, len(t.files))
	for ino := range t.files {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		p, ok := paths[ino]
		if !ok || t.refs[ino] == 0 {
			continue // no durable name: it goes with the tree
		}
		if err := restore(p, t.files[ino]); err != nil {
			return err
		}
	}
	// The tree, built beside the live one and swapped in.
	staging := filepath.Join(backing, "staging")
	old := filepath.Join(backing, "old")
	for _, p := range []string{staging, old} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("powerfs: drop: %w", err)
		}
	}
	var rootSt unix.Stat_t
	if err := unix.Lstat(t.live, &rootSt); err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	if err := os.Mkdir(staging, fs.FileMode(rootSt.Mode&0o7777)); err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	onPath := map[uint64]bool{}
	var build func(dirIno uint64, dst string) error
	build = func(dirIno uint64, dst string) error {
		onPath[dirIno] = true
		defer delete(onPath, dirIno)
		names := make([]string, 0, len(t.dirs[dirIno]))
		for name := range t.dirs[dirIno] {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			e := t.dirs[dirIno][name]
			p := filepath.Join(dst, name)
			switch {
			case e.isDir():
				if onPath[e.ino] {
					// Directories whose moves were made durable in some
					// directories and not others can name each other;
					// the inner copy is left out rather than recursing
					// for ever.
					continue
				}
				if err := os.Mkdir(p, fs.FileMode(e.mode&0o7777)); err != nil {
					return err
				}
				if err := build(e.ino, p); err != nil {
					return err
				}
			case e.isSymlink():
				if err := os.Symlink(e.target, p); err != nil {
					return err
				}
			default:
				src, ok := paths[e.ino]
				if !ok {
					return fmt.Errorf("inode %d of durable entry %s is gone (a bug in powerfs)", e.ino, p)
				}
				if err := os.Link(src, p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := build(t.root, staging); err != nil {
		return fmt.Errorf("powerfs: drop: rebuilding the durable tree: %w", err)
	}
	if err := os.Rename(t.live, old); err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	if err := os.Rename(staging, t.live); err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	for _, p := range []string{old, t.grave} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("powerfs: drop: %w", err)
		}
	}
	if err := os.Mkdir(t.grave, 0o700); err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	return t.scan()
}

// restore puts a file's durable content back: its durable size, then the
// saved extents newest first, so that the oldest save of every byte wins.
func restore(path string, st *fileState) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(st.synced); err != nil {
		return fmt.Errorf("powerfs: drop: %w", err)
	}
	for i := len(st.undo) - 1; i >= 0; i-- {
		e := st.undo[i]
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			return fmt.Errorf("powerfs: drop: %w", err)
		}
	}
	return nil
}

// Stats is what the tracker holds right now.
type Stats struct {
	// DirtyFiles have writes, truncates or fallocates not yet synced.
	DirtyFiles int
	// UndoBytes are the durable bytes kept in memory to restore them.
	UndoBytes int64
	// Graved are inodes kept alive only for durable entries.
	Graved int
}

func (t *tracker) stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Stats{DirtyFiles: len(t.files), UndoBytes: t.undoBytes, Graved: len(t.graved)}
}

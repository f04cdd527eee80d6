package powerfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fsNamePrefix starts the source of every powerfs mount in /proc/mounts;
// the owning process's pid follows, so that Sweep can tell a mount whose
// server died from one another harness is serving.
const fsNamePrefix = "chainraft-powerfs-"

// Disk is one directory on powerfs: Mount puts it there, LoseUnsynced cuts
// its power, Close takes it off. Its methods are not safe for concurrent
// use; the caller (one node of a cluster) serializes them.
type Disk struct {
	mountpoint string
	backing    string // <mountpoint>.disk
	live       string // backing/live: the files as written
	t          *tracker
	server     *fuse.Server
}

// Mount puts directory mountpoint on powerfs: its files move to
// <mountpoint>.disk/live, which a FUSE server in this process then serves
// at mountpoint. What the directory held is durable; from now on only what
// is synced is. mountpoint is made if missing.
func Mount(mountpoint string) (*Disk, error) {
	mountpoint = filepath.Clean(mountpoint)
	d := &Disk{mountpoint: mountpoint, backing: mountpoint + ".disk"}
	d.live = filepath.Join(d.backing, "live")
	grave := filepath.Join(d.backing, "grave")
	for _, p := range []string{mountpoint, d.live, grave} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("powerfs: %w", err)
		}
	}
	// A directory that already holds files keeps them, as durable.
	ents, err := os.ReadDir(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("powerfs: %w", err)
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(mountpoint, e.Name()), filepath.Join(d.live, e.Name())); err != nil {
			return nil, fmt.Errorf("powerfs: moving %s onto the disk: %w", e.Name(), err)
		}
	}
	if d.t, err = newTracker(d.live, grave); err != nil {
		return nil, err
	}
	if err := d.mount(); err != nil {
		return nil, err
	}
	return d, nil
}

// Mountpoint is where the disk is mounted.
func (d *Disk) Mountpoint() string { return d.mountpoint }

// Stats is what a power cut would take back right now.
func (d *Disk) Stats() Stats { return d.t.stats() }

func mountOptions() *fs.Options {
	return &fs.Options{MountOptions: fuse.MountOptions{
		// As root, mount(2) directly; otherwise go-fuse falls back to
		// fusermount3 (package fuse3).
		DirectMount: true,
		FsName:      fsNamePrefix + strconv.Itoa(os.Getpid()),
		Name:        "powerfs",
		// Without xattrs the kernel stops asking for
		// security.capability before every write.
		DisableXAttrs: true,
		// Larger writes cross into user space fewer times.
		MaxWrite: 1 << 20,
	}}
}

func (d *Disk) mount() error {
	root, err := newRoot(d.live, d.t)
	if err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	srv, err := fs.Mount(d.mountpoint, root, mountOptions())
	if err != nil {
		return fmt.Errorf("powerfs: mounting %s: %w", d.mountpoint, err)
	}
	d.server = srv
	return nil
}

// unmountWait bounds how long an unmount waits for the kernel to let go
// of a mount (files a killed process had open are released
// asynchronously) before it detaches it lazily.
const unmountWait = 5 * time.Second

// unmount takes the FUSE mount down and waits for the server's goroutines.
func (d *Disk) unmount() error {
	srv := d.server
	if srv == nil {
		return nil
	}
	d.server = nil
	if err := srv.Unmount(); err == nil {
		return nil
	}
	// Busy after go-fuse's retries: detach it, and wait (bounded) for the
	// server's loops to see the connection go.
	if err := detach(d.mountpoint); err != nil {
		return fmt.Errorf("powerfs: unmounting %s: %w", d.mountpoint, err)
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }() // ends when the kernel ends the connection
	select {
	case <-done:
		return nil
	case <-time.After(unmountWait):
		return fmt.Errorf("powerfs: %s detached but its server still runs after %v", d.mountpoint, unmountWait)
	}
}

// LoseUnsynced cuts the disk's power: everything written and not synced
// is lost, as the package comment describes, and the disk is mounted again.
// Nothing may be using the mount: the caller has killed every process
// that had files open on it.
func (d *Disk) LoseUnsynced() error {
	if err := d.unmount(); err != nil {
		return err
	}
	if err := d.t.drop(d.backing); err != nil {
		return err
	}
	return d.mount()
}

// Close unmounts the disk and puts its files back at the mountpoint, so
// that the directory looks as it would have without powerfs; unsynced
// writes are kept (the power stayed on). It is idempotent.
func (d *Disk) Close() error {
	if d.t == nil {
		return nil
	}
	if err := d.unmount(); err != nil {
		return err
	}
	d.t = nil
	if err := os.Remove(d.mountpoint); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	if err := os.Rename(d.live, d.mountpoint); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	if err := os.RemoveAll(d.backing); err != nil {
		return fmt.Errorf("powerfs: %w", err)
	}
	return nil
}

var (
	availableOnce sync.Once
	availableErr  error
)

// Available reports why powerfs cannot mount here, or nil: it mounts a
// probe (once per process) and unmounts it. The usual reasons are no
// /dev/fuse (a container without the device), and neither root nor
// fusermount3.
func Available() error {
	availableOnce.Do(func() { availableErr = probe() })
	return availableErr
}

func probe() error {
	// As root go-fuse opens /dev/fuse itself; otherwise fusermount3 opens
	// it with the caller's rights (it is world-writable on a usual host).
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("FUSE is unavailable: %v", err)
	}
	f.Close()
	if os.Geteuid() != 0 && fusermount() == "" {
		return errors.New("FUSE needs root or fusermount3 (Debian package fuse3; make deps installs it)")
	}
	dir, err := os.MkdirTemp("", "chainraft-powerfs-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := Mount(filepath.Join(dir, "m"))
	if err != nil {
		return fmt.Errorf("FUSE mount failed: %v", err)
	}
	return d.Close()
}

// fusermount is the path of fusermount3 or fusermount, or "".
func fusermount() string {
	for _, b := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	return ""
}

// detach unmounts mountpoint lazily: it goes from the namespace now and
// from the kernel once nothing uses it.
func detach(mountpoint string) error {
	err := unix.Unmount(mountpoint, unix.MNT_DETACH)
	if err == nil || os.Geteuid() == 0 {
		return err
	}
	if bin := fusermount(); bin != "" {
		if out, err := exec.Command(bin, "-uz", mountpoint).CombinedOutput(); err != nil {
			return fmt.Errorf("%s -uz: %v: %s", bin, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return err
}

// Mounted lists the powerfs mountpoints in this mount namespace, with the
// pid of the process serving each.
func Mounted() (map[string]int, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMounts(f)
}

func parseMounts(r io.Reader) (map[string]int, error) {
	out := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || !strings.HasPrefix(fields[0], fsNamePrefix) || !strings.HasPrefix(fields[2], "fuse") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(fields[0], fsNamePrefix))
		if err != nil {
			continue
		}
		out[unescapeMount(fields[1])] = pid
	}
	return out, sc.Err()
}

// unescapeMount undoes /proc/mounts' octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Sweep detaches every powerfs mount whose server is gone: one a harness
// killed with SIGKILL left behind (its mountpoint answers "transport
// endpoint is not connected"). Mounts served by a live process, another
// harness's included, are left alone. It returns the mountpoints swept.
func Sweep() ([]string, error) {
	mounts, err := Mounted()
	if err != nil {
		return nil, err
	}
	var swept []string
	var errs []error
	for mp, pid := range mounts {
		if pid == os.Getpid() || (alive(pid) && connected(mp)) {
			continue
		}
		// A node that was inside a request when the server died is stuck
		// in the kernel (D state) until the connection is aborted: detaching
		// alone would leave it, a zombie, holding the connection.
		abortConnection(mp)
		if err := detach(mp); err != nil {
			errs = append(errs, fmt.Errorf("powerfs: sweeping %s: %w", mp, err))
			continue
		}
		swept = append(swept, mp)
	}
	return swept, errors.Join(errs...)
}

// fuseConnections is where the kernel lists FUSE connections (fusectl),
// each named by the minor device number of its mount.
const fuseConnections = "/sys/fs/fuse/connections"

// abortConnection aborts the FUSE connection of mountpoint mp, failing every
// request waiting on it, so the processes blocked there can exit. It needs
// root (fusectl, which it mounts if it is not), and is best effort: without
// it, detaching still clears the mount.
func abortConnection(mp string) {
	minor, ok := mountMinor(mp)
	if !ok || os.Geteuid() != 0 {
		return
	}
	if _, err := os.Stat(filepath.Join(fuseConnections, strconv.Itoa(minor))); err != nil {
		if unix.Mount("fusectl", fuseConnections, "fusectl", 0, "") == nil {
			// Mounted here, so unmounted here: a sweep leaves no mount.
			defer func() { _ = unix.Unmount(fuseConnections, 0) }()
		}
	}
	_ = os.WriteFile(filepath.Join(fuseConnections, strconv.Itoa(minor), "abort"), []byte("1"), 0o200)
}

// mountMinor finds mp's device minor number in /proc/self/mountinfo (a
// stat of a mount whose server died fails with ENOTCONN, so st_dev cannot
// be had that way).
func mountMinor(mp string) (int, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMount(f[4]) != mp {
			continue
		}
		_, min, ok := strings.Cut(f[2], ":")
		if !ok {
			return 0, false
		}
		n, err := strconv.Atoi(min)
		return n, err == nil
	}
	return 0, false
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// connected reports whether a FUSE mount still has its server.
func connected(mp string) bool {
	var st unix.Stat_t
	return !errors.Is(unix.Stat(mp, &st), unix.ENOTCONN)
}

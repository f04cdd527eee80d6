package powerfs

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// needFUSE skips a test on a machine where powerfs cannot mount.
func needFUSE(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		tb.Skipf("powerfs unavailable: %v", err)
	}
}

// mount mounts dir and unmounts it when the test ends, whatever happens.
func mount(t testing.TB, dir string) *Disk {
	t.Helper()
	d, err := Mount(dir)
	require.NoError(t, err)
	t.Cleanup(func() {
		if d.t != nil {
			require.NoError(t, d.Close())
		}
		m, err := Mounted()
		require.NoError(t, err)
		_, still := m[dir]
		require.False(t, still, "%s still mounted", dir)
	})
	return d
}

// tree describes every path under dir: a file by its content, a directory
// as "dir", a symlink as "->target".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			out[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			tgt, err := os.Readlink(p)
			require.NoError(t, err)
			out[rel] = "->" + tgt
		default:
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			out[rel] = string(b)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// writeFile writes content to name, fsyncing the file if sync.
func writeFile(t *testing.T, name, content string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	if sync {
		require.NoError(t, f.Sync())
	}
	require.NoError(t, f.Close())
}

func appendFile(t *testing.T, name, content string, sync bool) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	if sync {
		require.NoError(t, f.Sync())
	}
	require.NoError(t, f.Close())
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Open(dir)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

// TestLoseUnsynced writes, syncs some of it, cuts the power and checks
// that exactly the synced state survives: file data and sizes, and
// directory entries (creates, renames, unlinks, mkdir, rmdir).
func TestLoseUnsynced(t *testing.T) {
	needFUSE(t)
	dir := filepath.Join(t.TempDir(), "node")
	// What the directory holds before the mount is durable.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "olddir"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "emptydir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pre"), []byte("pre-content"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "olddir", "x"), []byte("x"), 0o644))
	d := mount(t, dir)
	p := func(name string) string { return filepath.Join(dir, name) }

	// Durable by file and directory fsync.
	writeFile(t, p("a"), "synced-a", true)
	writeFile(t, p("c"), "c1", true)
	writeFile(t, p("d"), "dd", false) // its name will be durable, its data not
	writeFile(t, p("vote"), "old", true)
	writeFile(t, p("t"), "0123456789", true)
	require.NoError(t, os.Symlink("a", p("link")))
	require.NoError(t, os.Mkdir(p("kept"), 0o755))
	syncDir(t, dir)
	writeFile(t, p("kept/g"), "g", true)
	syncDir(t, p("kept"))

	// Not durable.
	writeFile(t, p("b"), "b", true)               // the file synced, its directory not
	appendFile(t, p("pre"), " more", false)       // unsynced append
	f, err := os.OpenFile(p("pre"), os.O_RDWR, 0) // unsynced overwrite of synced bytes
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("PRE"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	appendFile(t, p("c"), "c2", false)
	writeFile(t, p("vote.tmp"), "new", true)
	require.NoError(t, os.Rename(p("vote.tmp"), p("vote"))) // no directory fsync
	require.NoError(t, os.Remove(p("olddir/x")))            // no directory fsync
	require.NoError(t, os.Remove(p("emptydir")))
	require.NoError(t, os.Truncate(p("t"), 3))
	f, err = os.OpenFile(p("t"), os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("XYZ"), 5)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Mkdir(p("newdir"), 0o755))
	writeFile(t, p("newdir/f"), "f", true)
	syncDir(t, p("newdir")) // newdir itself is not durable in the root

	// The store reads what it wrote.
	require.Equal(t, "PRE-content more", tree(t, dir)["pre"])
	require.Equal(t, "new", tree(t, dir)["vote"])
	require.Positive(t, d.Stats().DirtyFiles)

	require.NoError(t, d.LoseUnsynced())
	want := map[string]string{
		"a": "synced-a", "c": "c1", "d": "", "vote": "old", "t": "0123456789",
		"link": "->a", "kept": "dir", "kept/g": "g",
		"pre": "pre-content", "olddir": "dir", "olddir/x": "x", "emptydir": "dir",
	}
	require.Equal(t, want, tree(t, dir))
	require.Equal(t, Stats{}, d.Stats())

	// After the cut everything is durable again, and a second cut after
	// more unsynced writes comes back to the same state.
	appendFile(t, p("a"), "-unsynced", false)
	require.NoError(t, os.Remove(p("kept/g")))
	syncDir(t, dir)
	require.NoError(t, d.LoseUnsynced())
	require.Equal(t, want, tree(t, dir))

	// A synced unlink is durable too.
	require.NoError(t, os.Remove(p("d")))
	syncDir(t, dir)
	require.NoError(t, d.LoseUnsynced())
	delete(want, "d")
	require.Equal(t, want, tree(t, dir))

	// Close puts the files back where they were, unsynced data included.
	appendFile(t, p("a"), "+", false)
	require.NoError(t, d.Close())
	want["a"] = "synced-a+"
	require.Equal(t, want, tree(t, dir))
	_, err = os.Stat(dir + ".disk")
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// TestSyncedWriteModes covers O_DSYNC writes, fdatasync and truncation
// by O_TRUNC of a synced file.
func TestSyncedWriteModes(t *testing.T) {
	needFUSE(t)
	dir := filepath.Join(t.TempDir(), "node")
	d := mount(t, dir)
	p := func(name string) string { return filepath.Join(dir, name) }
	f, err := os.OpenFile(p("dsync"), os.O_WRONLY|os.O_CREATE|syscall.O_DSYNC, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString("every write durable")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	writeFile(t, p("datasync"), "", false)
	f, err = os.OpenFile(p("datasync"), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("fdatasynced")
	require.NoError(t, err)
	require.NoError(t, unix.Fdatasync(int(f.Fd())))
	require.NoError(t, f.Close())
	writeFile(t, p("trunc"), "long synced content", true)
	syncDir(t, dir)
	writeFile(t, p("trunc"), "short", false) // O_TRUNC, unsynced

	require.NoError(t, d.LoseUnsynced())
	require.Equal(t, map[string]string{
		"dsync": "every write durable", "datasync": "fdatasynced", "trunc": "long synced content",
	}, tree(t, dir))
}

// TestHelperMount is not a test: TestSweep runs the test binary with
// POWERFS_HELPER set, and this mounts that directory and waits to be
// killed, as a harness killed mid-run would.
func TestHelperMount(t *testing.T) {
	dir := os.Getenv("POWERFS_HELPER")
	if dir == "" {
		t.Skip("helper process for TestSweep")
	}
	if _, err := Mount(dir); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("mounted")
	time.Sleep(time.Minute)
	os.Exit(1)
}

// TestSweep kills a process serving a mount with SIGKILL and checks that
// Sweep detaches the mount it left, and only that one.
func TestSweep(t *testing.T) {
	needFUSE(t)
	mine := mount(t, filepath.Join(t.TempDir(), "mine"))
	dir := filepath.Join(t.TempDir(), "orphan")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMount$", "-test.count=1")
	cmd.Env = append(os.Environ(), "POWERFS_HELPER="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "mounted" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper: %q %v", line, err)
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	t.Cleanup(func() { _ = detach(dir) }) // if the sweep fails

	m, err := Mounted()
	require.NoError(t, err)
	require.Contains(t, m, dir)
	var st unix.Stat_t
	require.True(t, errors.Is(unix.Stat(dir, &st), unix.ENOTCONN), "a mount whose server died answers ENOTCONN")

	swept, err := Sweep()
	require.NoError(t, err)
	require.Equal(t, []string{dir}, swept)
	m, err = Mounted()
	require.NoError(t, err)
	require.NotContains(t, m, dir)
	require.Contains(t, m, mine.Mountpoint(), "a live mount is left alone")
}

func TestParseMounts(t *testing.T) {
	m, err := parseMounts(strings.NewReader(
		"chainraft-powerfs-12 /run/a\\040b fuse.powerfs rw 0 0\n" +
			"/dev/sda1 / ext4 rw 0 0\n" +
			"chainraft-powerfs-x /bad fuse.powerfs rw 0 0\n"))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"/run/a b": 12}, m)
}

// BenchmarkWrite compares appending 4 KiB writes to a file on the bare
// directory and on powerfs, without fsync and with an fdatasync every 16
// writes (a log's group commit).
func BenchmarkWrite(b *testing.B) {
	for _, onFUSE := range []bool{false, true} {
		for _, every := range []int{0, 16} {
			name := fmt.Sprintf("fuse=%v/fdatasync-every=%d", onFUSE, every)
			b.Run(name, func(b *testing.B) {
				dir := filepath.Join(b.TempDir(), "node")
				require.NoError(b, os.MkdirAll(dir, 0o755))
				if onFUSE {
					needFUSE(b)
					mount(b, dir)
				}
				f, err := os.Create(filepath.Join(dir, "log"))
				require.NoError(b, err)
				defer f.Close()
				buf := make([]byte, 4096)
				b.SetBytes(int64(len(buf)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					_, err := f.Write(buf)
					require.NoError(b, err)
					if every > 0 && i%every == every-1 {
						require.NoError(b, unix.Fdatasync(int(f.Fd())))
					}
				}
			})
		}
	}
}

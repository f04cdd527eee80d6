// Package proc starts and controls the real OS processes of a chainraft run:
// store nodes and ZooKeeper servers. The nemesis kills them (SIGKILL), pauses
// them (SIGSTOP/SIGCONT) and restarts them on the same data directory, and the
// design demands that no process outlives a run, a test, or a crash of the
// harness. Everything here serves those two needs.
//
// # Process groups
//
// Every process is started in its own process group (Setpgid) and every signal
// goes to the whole group, so a node that forks helpers, or a JVM wrapper
// script, is stopped, paused and killed as one unit. When the group leader
// exits, the package first waits for it WITHOUT reaping it (waitid with
// WNOWAIT), sends SIGKILL to the group to sweep up any member left behind, and
// only then reaps the leader. While the leader is an unreaped zombie its pid,
// which is the group id, cannot be reused by the kernel, so no signal from
// this package can ever hit an unrelated process group; after the reap the
// package never signals that group again.
//
// # Pdeathsig and the forking thread
//
// Children get Pdeathsig=SIGKILL so that if the harness dies (even by SIGKILL,
// when no cleanup code runs) the kernel kills them. Linux delivers the parent
// death signal when the *thread* that forked the child exits, not the process.
// Go creates and destroys OS threads behind goroutines' backs (a goroutine
// that exits while locked to its thread takes the thread with it), so a child
// forked from an arbitrary goroutine could be killed at a random moment of a
// healthy run. This package therefore forks every child from one dedicated
// goroutine, the forker, that locks itself to its OS thread and never returns:
// that thread lives exactly as long as the harness process. TestPdeathsig
// checks both halves: the grandchild survives the exit of the thread of the
// goroutine that asked for it, and dies when its parent process is SIGKILLed.
//
// # Goroutines
//
//   - the forker (one per program, started lazily, never stops by design: it
//     owns the thread that is every child's "parent" for Pdeathsig);
//   - one waiter per started incarnation of a Process, owned by that Process:
//     it blocks in waitid until the child exits, sweeps the group, reaps, closes
//     the log file and closes Exited(). It ends when the child ends, and every
//     child ends: Kill, Stop, Group.CloseAll and KillAll make sure of it;
//   - the signal watcher of KillAllOnSignal (opt-in), stopped by the function
//     it returns.
//
// # Harness safety net
//
// Every started process is registered in a package-wide set until it is
// reaped. KillAll kills everything in that set. Library code never touches
// signal handling; the harness's main (chainraft run) and test binaries opt in:
//
//	stop := proc.KillAllOnSignal() // SIGINT/SIGTERM: kill every child, then die of the signal
//	defer stop()
//
// and test packages that start processes use
//
//	func TestMain(m *testing.M) { os.Exit(proc.RunTests(m)) }
//
// which also installs KillAllOnSignal, kills whatever a test leaked, and
// removes the binary built by BuildChainraft. Pdeathsig covers the case where
// none of this code gets to run.
//
// # Invariants
//
//   - a Process has at most one live incarnation; Restart refuses while it runs;
//   - Exited() of an incarnation is closed only after the child was reaped and
//     its log file closed;
//   - signals are sent only to groups whose leader has not been reaped.
package proc

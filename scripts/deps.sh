#!/bin/sh
# deps.sh: install what chainraft's real-process tests need, idempotently.
#
#   - a Java runtime and Debian's ZooKeeper jars (package `zookeeper`, which
#     pulls libzookeeper-java), installed only when missing. Never `zookeeperd`:
#     its postinst starts a system ZooKeeper on :2181. chainraft starts its own
#     servers from the jars (internal/zkserver).
#   - Debian's etcd-server (etcd 3.4, /usr/bin/etcd) for `--store etcd`,
#     installed only when missing. Its package enables a system etcd on
#     :2379; chainraft never uses it, so the install runs with a policy-rc.d
#     that forbids starting services (unless one is already in place), and
#     the service is stopped and disabled afterwards where systemd runs.
#   - fuse3 (fusermount3) for power faults (internal/powerfs), installed
#     only when missing: as root the harness mounts FUSE directly and needs
#     only /dev/fuse, but without root go-fuse mounts through fusermount3.
#     Power faults are optional, so a failure here is a warning.
#   - iptables, nftables, openssh-server and openssh-client for --hosts
#     (netns:N hosts run an sshd each; partitions are iptables rules),
#     installed quietly only when missing, no sshd service started. Optional:
#     a failure is a warning.
#   - the Go module dependencies (go mod download).
#
# Works as root (CI containers) or with sudo; prints every step it takes.
set -eu

say() { printf 'deps: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	fi
fi

have_java() { command -v java >/dev/null 2>&1 && java -version >/dev/null 2>&1; }
have_zk_jars() {
	[ -f /usr/share/java/zookeeper.jar ] || [ -f /usr/share/zookeeper/zookeeper.jar ] ||
		ls /usr/share/zookeeper/zookeeper-[0-9]*.jar >/dev/null 2>&1
}

if have_java && have_zk_jars; then
	say "java and the ZooKeeper jars are installed: $(command -v java), $(ls /usr/share/java/zookeeper.jar /usr/share/zookeeper/zookeeper*.jar 2>/dev/null | head -n 1)"
else
	if ! command -v apt-get >/dev/null 2>&1; then
		say "java or the ZooKeeper jars are missing and there is no apt-get: install a JRE and Apache ZooKeeper 3.8 yourself (set JAVA and ZOOKEEPER_CLASSPATH if not in the usual places)" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
		say "need root or sudo to apt-get install zookeeper default-jre-headless" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	say "running: $SUDO apt-get update"
	$SUDO apt-get update
	say "running: $SUDO apt-get install -y --no-install-recommends zookeeper default-jre-headless"
	$SUDO apt-get install -y --no-install-recommends zookeeper default-jre-headless
	have_java || { say "java still missing after install" >&2; exit 1; }
	have_zk_jars || { say "ZooKeeper jars still missing after install" >&2; exit 1; }
	say "installed: $(command -v java), /usr/share/java/zookeeper.jar"
fi

have_etcd() { [ -x /usr/bin/etcd ] || command -v etcd >/dev/null 2>&1; }

if have_etcd; then
	say "etcd is installed: $(command -v etcd || echo /usr/bin/etcd)"
else
	if ! command -v apt-get >/dev/null 2>&1; then
		say "etcd is missing and there is no apt-get: install etcd 3.4+ yourself (set ETCD to its path if not in PATH)" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
		say "need root or sudo to apt-get install etcd-server" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	# No service may start during the install: a policy-rc.d that says
	# 101 ("action forbidden"), ours only if none is there already.
	ours_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		say "adding a temporary /usr/sbin/policy-rc.d so the package starts no etcd service"
		printf '#!/bin/sh\n# chainraft scripts/deps.sh: no service starts during the install\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod 755 /usr/sbin/policy-rc.d
		ours_policy=yes
	fi
	say "running: $SUDO apt-get update"
	$SUDO apt-get update || { [ -n "$ours_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d; exit 1; }
	say "running: $SUDO apt-get install -y --no-install-recommends etcd-server"
	$SUDO apt-get install -y --no-install-recommends etcd-server || { [ -n "$ours_policy" ] && $SUDO rm -f /usr/sbin/policy-rc.d; exit 1; }
	if [ -n "$ours_policy" ]; then
		$SUDO rm -f /usr/sbin/policy-rc.d
	fi
	have_etcd || { say "etcd still missing after install" >&2; exit 1; }
	say "installed: $(command -v etcd || echo /usr/bin/etcd)"
fi
# Whatever installed it, no system etcd may run: chainraft starts its own
# on free ports and never depends on one.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	if systemctl is-active --quiet etcd 2>/dev/null || systemctl is-enabled --quiet etcd 2>/dev/null; then
		say "running: $SUDO systemctl disable --now etcd (the package's system service)"
		$SUDO systemctl disable --now etcd || true
	fi
fi

if command -v fusermount3 >/dev/null 2>&1; then
	say "fuse3 is installed: $(command -v fusermount3)"
elif ! command -v apt-get >/dev/null 2>&1; then
	say "warning: no fusermount3 and no apt-get: power faults need root or FUSE 3's fusermount3" >&2
elif [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
	say "warning: need root or sudo to apt-get install fuse3 (power faults without root)" >&2
else
	export DEBIAN_FRONTEND=noninteractive
	say "running: $SUDO apt-get install -y --no-install-recommends fuse3"
	if ! $SUDO apt-get install -y --no-install-recommends fuse3; then
		say "running: $SUDO apt-get update"
		$SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends fuse3 ||
			say "warning: could not install fuse3: power faults need root without it" >&2
	fi
fi
if [ ! -e /dev/fuse ]; then
	say "warning: no /dev/fuse: power faults are unavailable here (containers need --device /dev/fuse)" >&2
fi

# --hosts: iptables (kernel-level partitions), nftables (the tables
# iptables-nft writes), openssh-server (sshd in every netns host) and
# openssh-client, installed quietly only when one is missing. The package's
# postinst would start a system sshd; a policy-rc.d of ours (only if none is
# in place) forbids it, as for etcd. Optional: a failure is a warning.
have_hosts_tools() {
	command -v iptables >/dev/null 2>&1 && command -v iptables-restore >/dev/null 2>&1 &&
		command -v nft >/dev/null 2>&1 && [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null 2>&1
}
if have_hosts_tools; then
	say "iptables, nftables and openssh-server are installed (--hosts)"
elif ! command -v apt-get >/dev/null 2>&1; then
	say "warning: iptables/nftables/openssh-server missing and no apt-get: --hosts netns:N needs them" >&2
elif [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
	say "warning: need root or sudo to apt-get install iptables nftables openssh-server (--hosts)" >&2
else
	export DEBIAN_FRONTEND=noninteractive
	hosts_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# chainraft scripts/deps.sh: no service starts during the install\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
		$SUDO chmod 755 /usr/sbin/policy-rc.d
		hosts_policy=yes
	fi
	say "running: $SUDO apt-get install -y -q --no-install-recommends iptables nftables openssh-server openssh-client"
	if ! $SUDO apt-get install -y -q --no-install-recommends iptables nftables openssh-server openssh-client >/dev/null; then
		say "running: $SUDO apt-get update"
		$SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends iptables nftables openssh-server openssh-client >/dev/null ||
			say "warning: could not install iptables nftables openssh-server: --hosts netns:N is unavailable" >&2
	fi
	if [ -n "$hosts_policy" ]; then
		$SUDO rm -f /usr/sbin/policy-rc.d
	fi
fi
if command -v go >/dev/null 2>&1; then
	GO=go
elif [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
else
	say "no go toolchain found; skipping go mod download" >&2
	exit 0
fi
cd "$(dirname "$0")/.."
say "running: $GO mod download"
$GO mod download
say "done"

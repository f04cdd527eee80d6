#!/bin/sh
# deps.sh: install what chainraft's real-process tests need, idempotently.
#
#   - a Java runtime and Debian's ZooKeeper jars (package `zookeeper`, which
#     pulls libzookeeper-java), installed only when missing. Never `zookeeperd`:
#     its postinst starts a system ZooKeeper on :2181. chainraft starts its own
#     servers from the jars (internal/zkserver).
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

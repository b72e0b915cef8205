#!/usr/bin/env bash
# The mobile bindings of the SDK (package edgechat), as `gomobile bind` makes
# them for the Android and iOS apps, checked without the Android NDK or Xcode
# (make bindings; make test runs it first):
#
#   1. gobind is go.mod's tool (`tool golang.org/x/mobile/cmd/gobind`), run
#      as `go tool gobind` at the golang.org/x/mobile version go.mod requires;
#      that requirement is also where gobind finds golang.org/x/mobile/bind.
#   2. gobind writes the Go, Java and Objective-C bindings of
#      github.com/edgenode/edgenode/edgechat into a temporary directory.
#   3. The generated text is checked: the handle is edgechat.Client in Java and
#      EdgechatClient in Objective-C (not Client_), and the package function
#      Open, Client's send/history/start/close and the Listener interface are
#      bound, by name. Every item gobind skipped is printed; a skipped member
#      of Client (or Listener) fails unless ALLOWED_SKIPS below lists it as
#      Go-only (edgechat/doc.go, "Bindable surface").
#   4. javac compiles the generated Java (go.Seq and friends included; a stub
#      stands in for the one Android class they use, android.content.Context).
#   5. The SDK compiles for each of BINDINGS_TARGETS (GOOS/GOARCH, cgo off),
#      and the generated Go/C side (cgo, JNI) is built the way gomobile builds
#      it (-buildmode=c-shared, libgojni.so) for android on the host's
#      architecture with the host C compiler, the JDK's jni.h and stubs of the
#      NDK's android/log.h, liblog and libandroid. The iOS side (Objective-C,
#      Foundation) needs Xcode: its Go files are only parsed (gofmt -e).
#
# Without javac, or without a C compiler and jni.h, step 4 or the cgo build
# of step 5 is skipped with a notice; under CI (CI=true; .ci/run installs
# them) a missing tool is an error.
#
#   BINDINGS_TARGETS  GOOS/GOARCH list for step 5 (default below)
#   BINDINGS_OUT      keep the generated bindings in this (new or empty) directory
set -euo pipefail
cd "$(dirname "$0")/.."

# Skipped items that are Go-only on purpose (edgechat/doc.go, "Bindable
# surface"), as Type.Member or Function, bash glob patterns.
ALLOWED_SKIPS=(
	'Config.Logger'                   # *slog.Logger
	'Config.HTTPClient'               # *http.Client
	'Config.Now'                      # func() time.Time
	'*Context'                        # the *Context variants of the calls
	'*.*Context'
	'Client.WatchIDs'                 # []int64; Watch takes a string
	'MessageList.Messages'            # slice accessors; the lists have Len and Get(i)
	'ConversationList.Conversations'
	'UsageList.Usage'
	'ChangeList.Changes'
	'APIError.RetryAfter'             # time.Duration; ErrorRetryAfterMillis(err) gives it
	'ConversationPreview.Contact'     # struct-typed field; GetContact returns it
)
# Types whose skipped members fail the check unless ALLOWED_SKIPS lists them:
# a new method of Client that does not bind is an API the apps cannot call.
STRICT_TYPES=(Client Listener)
# The calls the apps cannot do without (Java names; checked by name only).
REQUIRED_CLIENT_METHODS=(send history start close)

PKG=github.com/edgenode/edgenode/edgechat
TARGETS=${BINDINGS_TARGETS:-android/arm64 ios/arm64}
STRICT_TOOLS=${CI:-false}

# gobind runs `go` from PATH: put $GO (make passes it) first.
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi
PATH=$(dirname "$(command -v "$GO")"):$PATH
export PATH
export GOWORK=off

now() { date +%s.%N; }
TIMINGS=()
T0=$(now)
timed() { # timed NAME: record the time since the previous call
	local t
	t=$(now)
	TIMINGS+=("$(awk -v a="$T0" -v b="$t" -v n="$1" 'BEGIN { printf "%6.1fs  %s", b - a, n }')")
	T0=$t
}
fail() {
	echo "bindings: FAIL: $*" >&2
	exit 1
}
missing_tool() { # missing_tool WHAT: an error under CI, a notice otherwise
	if [ "$STRICT_TOOLS" = true ]; then
		fail "$1 (CI=true: .ci/run installs it)"
	fi
	echo "bindings: SKIP: $1"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgechat-bindings.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
OUT=${BINDINGS_OUT:-$WORK/out}
if [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
	fail "BINDINGS_OUT=$OUT is not empty (stale files would be checked too)"
fi
mkdir -p "$OUT"

# --- 1. gobind ---------------------------------------------------------------
# go.mod's tool directive pins it; `go tool -n` builds it (cached) and prints
# the binary's path.
MOBILE_VERSION=$(go list -m -f '{{.Version}}' golang.org/x/mobile) ||
	fail "golang.org/x/mobile is not in go.mod (go get -tool golang.org/x/mobile/cmd/gobind@<version>)"
GOBIND=$(GOFLAGS= go tool -n gobind) ||
	fail "go tool gobind: go.mod has no 'tool golang.org/x/mobile/cmd/gobind'"
echo "bindings: gobind golang.org/x/mobile@$MOBILE_VERSION, $(go version)"
timed "build gobind (go tool)"

# --- 2. generate -------------------------------------------------------------
# gobind runs `go` itself and writes seq.go etc. from golang.org/x/mobile/bind,
# which it finds through this module's go.mod.
"$GOBIND" -lang=go,java,objc -outdir "$OUT" "$PKG"
timed "gobind -lang=go,java,objc"

# --- 3. the bound surface ----------------------------------------------------
seq_java=$(find "$OUT" -path '*/go/Seq.java' | head -1)
[ -n "$seq_java" ] || fail "no go/Seq.java in the gobind output"
JAVA_ROOT=$(dirname "$(dirname "$seq_java")")
[ -d "$JAVA_ROOT/edgechat" ] || fail "no Java package edgechat in the gobind output"
GO_SIDE=$OUT/src/gobind
OBJC_H=$GO_SIDE/Edgechat.objc.h
[ -f "$OBJC_H" ] || fail "no Objective-C header Edgechat.objc.h in the gobind output"

problems=()
need() { # need FILE REGEX WHAT
	if ! [ -f "$1" ] || ! grep -Eq "$2" "$1"; then
		problems+=("$3")
	fi
}
client_java=$JAVA_ROOT/edgechat/Client.java
client_objc=$WORK/EdgechatClient.objc.h
awk '/^@interface EdgechatClient :/, /^@end/' "$OBJC_H" >"$client_objc"

need "$client_java" '^public final class Client ' "Java: class edgechat.Client"
need "$client_objc" '^@interface EdgechatClient : ' "ObjC: @interface EdgechatClient"
if grep -rlE '\bClient_\b' "$JAVA_ROOT" "$OBJC_H" >/dev/null; then
	problems+=("the handle is named Client_ somewhere (another Go name clashes with Client)")
fi
need "$JAVA_ROOT/edgechat/Edgechat.java" 'public static native .* open\(' "Java: Edgechat.open (package function Open)"
need "$OBJC_H" '^FOUNDATION_EXPORT .*EdgechatOpen\(' "ObjC: EdgechatOpen (package function Open)"
for m in "${REQUIRED_CLIENT_METHODS[@]}"; do
	need "$client_java" "public native .* $m\\(" "Java: Client.$m"
	need "$client_objc" "^- \\([^)]*\\)$m[:;]" "ObjC: -[EdgechatClient $m]"
done
need "$JAVA_ROOT/edgechat/Listener.java" '^public interface Listener ' "Java: interface edgechat.Listener"
need "$OBJC_H" '^@protocol EdgechatListener ' "ObjC: @protocol EdgechatListener"

# gobind writes "// skipped <kind> <Type.Member|Name> with <reason>" where it
# leaves something out. The Java sources and the Objective-C header are the
# public surfaces; list every item once, with the languages that skip it.
skips=$WORK/skipped.txt
{
	grep -rhoE '// skipped [a-z]+ [A-Za-z0-9_.]+ with .*' "$JAVA_ROOT/edgechat" | sed 's/^/java /' || true
	grep -hoE '// skipped [a-z]+ [A-Za-z0-9_.]+ with .*' "$OBJC_H" | sed 's/^/objc /' || true
} | awk '{
	lang = $1; kind = $4; name = $5
	reason = $0; sub(/^.* with /, "", reason)
	key = name "\t" kind
	if (!(key in langs)) { langs[key] = lang; why[key] = reason }
	else if (index(langs[key], lang) == 0) langs[key] = langs[key] "," lang
} END { for (key in langs) print key "\t" langs[key] "\t" why[key] }' | LC_ALL=C sort >"$skips"

allowed() {
	local p
	for p in "${ALLOWED_SKIPS[@]}"; do
		# shellcheck disable=SC2053 # $p is a glob pattern
		[[ $1 == $p ]] && return 0
	done
	return 1
}
strict() {
	local t
	for t in "${STRICT_TYPES[@]}"; do
		[[ $1 == "$t."* ]] && return 0
	done
	return 1
}
echo "bindings: gobind skipped $(wc -l <"$skips") item(s) of $PKG:"
while IFS=$'\t' read -r name kind langs reason; do
	key="$kind $name"
	if allowed "$name"; then
		verdict="Go-only (doc.go)"
	elif strict "$name"; then
		verdict="NOT ALLOWED: add a bindable form, or list it in doc.go and ALLOWED_SKIPS"
		problems+=("skipped $key ($reason)")
	else
		verdict="note: not in doc.go's Go-only list"
	fi
	printf '  %-45s %-10s %s\n' "$key" "$langs" "$verdict: $reason"
done <"$skips"
timed "check the bound surface"

if [ ${#problems[@]} -gt 0 ]; then
	printf '  missing or not bound: %s\n' "${problems[@]}" >&2
	fail "the bindings lack ${#problems[@]} item(s) of the mobile API (BINDINGS_OUT=<dir> keeps the generated files)"
fi
echo "bindings: Java edgechat.Client, ObjC EdgechatClient, Open, Client.{${REQUIRED_CLIENT_METHODS[*]}} and Listener are bound"

# --- 4. javac ----------------------------------------------------------------
if command -v javac >/dev/null 2>&1; then
	# go/Seq.java imports android.content.Context (for Seq.setContext): the
	# only Android class in gobind's Java output.
	mkdir -p "$WORK/javastub/android/content" "$WORK/classes"
	echo 'package android.content; public abstract class Context {}' >"$WORK/javastub/android/content/Context.java"
	# Android apps compile Java 8; -Xlint:-options hides "8 is obsolete".
	find "$JAVA_ROOT" "$WORK/javastub" -name '*.java' >"$WORK/java-files"
	javac -Xlint:-options --release 8 -d "$WORK/classes" @"$WORK/java-files"
	echo "bindings: javac $(javac -version 2>&1 | awk '{ print $2 }') compiled $(wc -l <"$WORK/java-files") Java files (--release 8)"
	timed "javac the Java bindings"
else
	missing_tool "javac not found: the generated Java is not compiled (apt-get install default-jdk-headless)"
fi

# --- 5a. the SDK for the devices ---------------------------------------------
# A compile check only (nothing is linked or kept): without optimization
# (-N -l) the cold build of modernc.org/sqlite takes half the time.
for t in $TARGETS; do
	GOOS=${t%/*} GOARCH=${t#*/} CGO_ENABLED=0 go build -gcflags='all=-N -l' ./edgechat
	timed "go build ./edgechat for $t (cgo off)"
done
echo "bindings: ./edgechat compiles for $TARGETS"

# --- 5b. the generated Go side, as gomobile builds it for android ------------
gofmt -e -l "$GO_SIDE"/*.go >/dev/null # every generated Go file parses (iOS ones too)
CC=${CC:-$(command -v gcc || command -v cc || true)}
javac_bin=$(command -v javac || true)
JAVA_HOME=${JAVA_HOME:-${javac_bin:+$(dirname "$(dirname "$(readlink -f "$javac_bin")")")}}
if [ -z "$CC" ]; then
	missing_tool "no C compiler: the cgo side of the bindings is not built (apt-get install gcc)"
elif [ -z "$JAVA_HOME" ] || [ ! -f "$JAVA_HOME/include/jni.h" ]; then
	missing_tool "no jni.h (JAVA_HOME=${JAVA_HOME:-unset}): the cgo side of the bindings is not built"
else
	# The NDK's headers and libraries that the generated C uses, stubbed: its
	# jni.h includes stdint.h (the JDK's does not), android/log.h and liblog.
	stub=$WORK/ndkstub
	mkdir -p "$stub/android" "$stub/lib"
	printf '#pragma once\n#include <stdint.h>\n#include_next <jni.h>\n' >"$stub/jni.h"
	cat >"$stub/android/log.h" <<-'EOF'
		#pragma once
		#include <stdarg.h>
		enum { ANDROID_LOG_UNKNOWN, ANDROID_LOG_DEFAULT, ANDROID_LOG_VERBOSE, ANDROID_LOG_DEBUG,
		       ANDROID_LOG_INFO, ANDROID_LOG_WARN, ANDROID_LOG_ERROR, ANDROID_LOG_FATAL, ANDROID_LOG_SILENT };
		int __android_log_write(int prio, const char *tag, const char *text);
		int __android_log_print(int prio, const char *tag, const char *fmt, ...);
		int __android_log_vprint(int prio, const char *tag, const char *fmt, va_list ap);
	EOF
	printf '#include <android/log.h>\nint __android_log_write(int p, const char *t, const char *s) { return 0; }\nint __android_log_print(int p, const char *t, const char *f, ...) { return 0; }\nint __android_log_vprint(int p, const char *t, const char *f, va_list ap) { return 0; }\n' >"$stub/log.c"
	"$CC" -shared -fPIC -I"$stub" -o "$stub/lib/liblog.so" "$stub/log.c"
	"$CC" -shared -fPIC -o "$stub/lib/libandroid.so" -x c /dev/null

	# gomobile builds the gobind directory (package main) inside a module
	# that sees this one; a workspace does that without touching go.mod.
	mod=$WORK/gobindmod
	mkdir -p "$mod"
	cp -r "$GO_SIDE" "$mod/gobind"
	gover=$(go list -m -f '{{.GoVersion}}')
	printf 'module edgechatbind\n\ngo %s\n' "$gover" >"$mod/go.mod"
	printf 'go %s\n\nuse (\n\t%s\n\t%s\n)\n' "$gover" "$PWD" "$mod" >"$WORK/go.work"
	arch=$(go env GOHOSTARCH)
	# -D_GNU_SOURCE: bionic declares what runtime/cgo uses by default, glibc
	# not; -Wno-incompatible-pointer-types: the JDK's AttachCurrentThread takes
	# void** where the NDK's takes JNIEnv** (gobind's C has -Werror); netgo:
	# the cgo resolver of net for android expects bionic's getnameinfo.
	(cd "$mod" && GOWORK=$WORK/go.work GOOS=android GOARCH=$arch CGO_ENABLED=1 CC=$CC \
		CGO_CFLAGS="-O2 -D_GNU_SOURCE -Wno-incompatible-pointer-types -I$stub -I$JAVA_HOME/include -I$JAVA_HOME/include/linux" \
		CGO_LDFLAGS="-L$stub/lib" \
		go build -tags netgo -buildmode=c-shared -o "$WORK/libgojni.so" ./gobind)
	echo "bindings: the generated Go/C side builds for android/$arch with cgo (libgojni.so, $(du -h "$WORK/libgojni.so" | cut -f1))"
	timed "go build -buildmode=c-shared gobind for android/$arch (cgo, JNI)"
fi

echo "bindings: ok"
printf '  %s\n' "${TIMINGS[@]}"

#!/usr/bin/env bash
# Install what the JVM build needs (idempotent), compile the platform-free Kotlin core and run its JUnit 5 tests.
#
#   bash android-demo/core/run-tests.sh
#
# Needs: a JDK, Debian's junit5, libxerial-sqlite-jdbc-java and libandroid-json-org-java (installed with apt-get
# when missing: run as root or with sudo), and npm (kotlin-compiler is installed into .tools/). Compilation is
# skipped when the sources, the compiler and the jars are unchanged since the last successful build.
set -euo pipefail

KOTLIN_VERSION=2.4.20
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tools="$here/.tools"
build="$here/build"
java_dir=/usr/share/java
launcher="$java_dir/junit-platform-console-standalone.jar"
json_jar="$java_dir/json-android.jar"
sqlite_jar="$java_dir/sqlite-jdbc.jar"

log() { printf 'run-tests: %s\n' "$*" >&2; }

# --- install -------------------------------------------------------------------------------------------------------
packages=()
command -v javac >/dev/null || packages+=(default-jdk-headless)
[[ -f $launcher ]] || packages+=(junit5)
[[ -f $sqlite_jar ]] || packages+=(libxerial-sqlite-jdbc-java)
[[ -f $json_jar ]] || packages+=(libandroid-json-org-java)
if ((${#packages[@]})); then
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    log "installing ${packages[*]} with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

kotlin_home="$tools/node_modules/kotlin-compiler"
installed="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$kotlin_home/package.json" 2>/dev/null || true)"
if [[ $installed != "$KOTLIN_VERSION" ]]; then
    command -v npm >/dev/null || { log "npm is missing: install Node.js (apt-get install npm)"; exit 1; }
    log "installing kotlin-compiler@$KOTLIN_VERSION into $tools (npm)"
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
fi
kotlinc="$kotlin_home/bin/kotlinc"
stdlib="$kotlin_home/lib/kotlin-stdlib.jar"

# --- compile -------------------------------------------------------------------------------------------------------
if grep -rlE '^import android\.' "$here/src" >/dev/null; then
    log "android.* imports found in core (it must stay platform-free):"
    grep -rlE '^import android\.' "$here/src" >&2
    exit 1
fi

main_cp="$json_jar"
test_cp="$build/main:$json_jar:$sqlite_jar:$launcher"
stamp="$build/.stamp"
digest="$( (echo "$KOTLIN_VERSION"; ls -l "$json_jar" "$sqlite_jar" "$launcher";
            find "$here/src" -name "*.kt" -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)"
if [[ -f $stamp && $(cat "$stamp") == "$digest" ]]; then
    log "sources unchanged since the last build; skipping compilation"
else
    rm -rf "$build"
    mkdir -p "$build"
    log "compiling core (kotlinc $KOTLIN_VERSION)"
    "$kotlinc" -Werror -jvm-target 17 -cp "$main_cp" -d "$build/main" "$here/src/main/kotlin"
    log "compiling tests"
    "$kotlinc" -Werror -jvm-target 17 -Xfriend-paths="$build/main" -cp "$test_cp" -d "$build/test" "$here/src/test/kotlin"
    echo "$digest" >"$stamp"
fi

# --- test ----------------------------------------------------------------------------------------------------------
# The cache round trip test asks the Python runtime to read a file the JVM wrote, when the project's venv exists.
python_opt=()
if [[ -x $repo/.venv/bin/python ]]; then
    python_opt=(-Dedgeopt.python="$repo/.venv/bin/python")
fi
# EDGEOPT_GOLDEN_RESOURCES=DIR (a directory holding golden/) runs the same tests against goldens made from another
# bundle (the end-to-end test makes them from the bundle the suite builds); they shadow the committed ones file by
# file, so a DIR without golden/embed/ (no --embed-bundle) still runs the embed tests on the committed embed goldens.
resources="$here/src/test/resources"
if [[ -n ${EDGEOPT_GOLDEN_RESOURCES:-} ]]; then
    [[ -f $EDGEOPT_GOLDEN_RESOURCES/golden/goldens.json ]] || {
        log "EDGEOPT_GOLDEN_RESOURCES=$EDGEOPT_GOLDEN_RESOURCES has no golden/goldens.json; write it with scripts/make_android_goldens.py"
        exit 2
    }
    resources="$EDGEOPT_GOLDEN_RESOURCES:$here/src/test/resources"
    log "goldens from $EDGEOPT_GOLDEN_RESOURCES/golden"
fi
java "${python_opt[@]}" -jar "$launcher" \
    --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests \
    --class-path "$build/main:$build/test:$resources:$json_jar:$sqlite_jar:$stdlib" \
    --scan-class-path "$build/test"

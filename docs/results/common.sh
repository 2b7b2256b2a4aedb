# Shared by the reproduction scripts in this folder (sourced, not run).
# job NAME COMMAND...: records the command in OUT/NAME.cmd, runs it with --report OUT/NAME.json
# and its console output in OUT/NAME.log; a failed or missed run does not stop the others.
job() {
    local name=$1; shift
    echo "$*" > "$OUT/$name.cmd"
    "$@" --report "$OUT/$name.json" > "$OUT/$name.log" 2>&1 || true
    echo "done $name"
}

# Sourced by the scripts that scripts/gpu-check.sh and scripts/gpu-session.sh write into
# gpu-bundle/ (and copied there by gpu-check.sh). The caller sets OUT, W (the width of the name
# column in the status lines) and, for `run`, BUDGET and MARGIN; SHOW_CAP=1 adds each step's cap
# to its status line.
status=()

# step NAME SECONDS COMMAND...: COMMAND with its output in $OUT/NAME.log, killed after SECONDS;
# its exit status and wall time go into `status`. Returns COMMAND's exit status.
step() {
  local name=$1 t=$2; shift 2
  local s0=$SECONDS
  timeout "$t" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  status+=("$(printf "%-${W}s rc=%-3s %4ss" "$name" "$rc" $((SECONDS - s0)))${SHOW_CAP:+ (cap ${t}s)}")
  return $rc
}

# run NAME CAP COMMAND...: step with at most CAP seconds and never more than what is left of BUDGET
# less MARGIN, so that whatever the script prints last still prints in time; skipped (124) when
# under 5 s are left.
run() {
  local name=$1 cap=$2; shift 2
  local left=$((BUDGET - SECONDS - MARGIN))
  local t=$((cap < left ? cap : left))
  if [ "$t" -lt 5 ]; then
    status+=("$(printf "%-${W}s skipped: out of time" "$name")")
    return 124
  fi
  step "$name" "$t" "$@"
}

#!/usr/bin/env bash
# The README's demo (`make run`): the clicks job runs in the foreground through `rivulet
# run`, and, as if from another terminal, it is rescaled to two workers and then upgraded to
# a new pipeline while it runs; `rivulet get` and `rivulet describe` show each step.
# Ctrl-C stops the job with a savepoint; `make run` again resumes from it.
set -euo pipefail
bin="${CARGO_TARGET_DIR:?}/release"
rivulet="$bin/rivulet"
export RIVULET_WORKER_BIN="$bin/rivulet-worker"
job=clicks-per-user
main=$$

# The other terminal. It stops as soon as the job's `rivulet run` has ended.
(
  step() {
    sleep "$1"
    kill -0 "$main" 2>/dev/null || exit 0
    shift
    echo
    echo "\$ rivulet $*"
    "$rivulet" "$@" || true
  }
  step 30 get
  step 1 scale "$job" --parallelism 2
  step 30 get
  step 1 apply -f examples/clicks-v2.yaml
  step 30 describe "$job"
  step 1 get
  kill -0 "$main" 2>/dev/null && echo && echo "(rescaled and upgraded; Ctrl-C stops with a savepoint)"
) &

exec "$rivulet" run examples/clicks.yaml --generator clicks

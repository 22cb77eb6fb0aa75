"""The Flink side of `rivulet-bench flink`: the comparison query on a local Flink.

Bids (JSON lines, one file) -> per auction, tumbling 10 s windows of event time
(`dateTime`, epoch ms, watermark 1 s behind) -> `count(*)` and `max(price)` -> JSON
files, with exactly-once checkpoints every `--checkpoint-ms` to `file://`. The same
query as `bench/queries/tumble.yaml`.

Prints one JSON object on its last line of stdout: `records_out` (lines in the
committed output files), `job_seconds` (Flink's net runtime of the job) and
`wall_seconds` (from this script's start: the JVM and the local cluster included).
"""

import argparse
import json
import os
import time

START = time.monotonic()

from pyflink.common import Configuration  # noqa: E402
from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402


def committed_lines(directory):
    """Lines in the sink's committed part files (in-progress ones start with a dot)."""
    lines = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.startswith(".") or name.startswith("_"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                lines += sum(1 for _ in f)
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--checkpoints", required=True)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--checkpoint-ms", type=int, default=1000)
    a = p.parse_args()

    conf = Configuration()
    conf.set_string("parallelism.default", str(a.parallelism))
    conf.set_string("execution.runtime-mode", "streaming")
    conf.set_string("execution.checkpointing.interval", f"{a.checkpoint_ms} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.dir", "file://" + os.path.abspath(a.checkpoints))
    conf.set_string("state.backend.type", "hashmap")
    # Enough slots for the parallelism on the local cluster.
    conf.set_string("taskmanager.numberOfTaskSlots", str(max(a.parallelism, 1)))
    env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    )
    env.execute_sql(
        f"""
        CREATE TABLE bids (
            auction BIGINT,
            price BIGINT,
            `dateTime` BIGINT,
            ts AS TO_TIMESTAMP_LTZ(`dateTime`, 3),
            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{os.path.abspath(a.input)}',
            'format' = 'json'
        )"""
    )
    env.execute_sql(
        f"""
        CREATE TABLE results (
            auction BIGINT,
            window_start TIMESTAMP(3),
            window_end TIMESTAMP(3),
            bids BIGINT,
            maxPrice BIGINT
        ) WITH (
            'connector' = 'filesystem',
            'path' = 'file://{os.path.abspath(a.output)}',
            'format' = 'json'
        )"""
    )
    result = env.execute_sql(
        """
        INSERT INTO results
        SELECT auction, window_start, window_end, COUNT(*), MAX(price)
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        GROUP BY auction, window_start, window_end"""
    )
    job = result.get_job_client().get_job_execution_result().result()
    wall = time.monotonic() - START
    print(
        json.dumps(
            {
                "records_out": committed_lines(a.output),
                "job_seconds": job.get_net_runtime() / 1000.0,
                "wall_seconds": wall,
            }
        )
    )


if __name__ == "__main__":
    main()

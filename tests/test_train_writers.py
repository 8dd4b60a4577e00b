"""jcnf.train.writers: fit's TensorBoard scalars match its JSON-lines records."""

import json
import os
import struct

import _train_worker as worker
import pytest
from etils import epath

import jcnf
from jcnf import train


def _read_scalars(directory) -> dict[tuple[str, int], float]:
    """{(tag, step): value} of every scalar in the event files under `directory`.

    Event files are TFRecord files: per record a uint64 length, a uint32 CRC,
    the serialized `Event` proto and another uint32 CRC.
    """
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    scalars = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    return scalars


def test_fit_writes_the_logged_scalars_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX", reason="the TensorBoard writer needs tensorboardX (the `tensorboard` extra)")
    metrics_path, tensorboard_dir = tmp_path / "metrics.jsonl", tmp_path / "tb"
    train.fit(jcnf.ConditionalRealNVP(**worker.MODEL_KWARGS), worker.tiny_problem(), 10, **worker.fit_options(),
              metrics_path=metrics_path, tensorboard_dir=tensorboard_dir)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tensorboard_dir))
    scalars = _read_scalars(tensorboard_dir)
    with open(metrics_path) as f:
        records = [json.loads(line) for line in f]
    assert [record["step"] for record in records] == [5, 10]
    for record in records:
        for key, value in record.items():
            if key != "step":
                # TensorBoard stores float32: the JSON's float64 agrees to float32 rounding.
                assert scalars[(key, record["step"])] == pytest.approx(value, rel=1e-6), key
    assert {tag for tag, _ in scalars} == {key for key in records[0] if key != "step"}


def test_metrics_log_writes_and_trims_through_epath(tmp_path):
    path = tmp_path / "nested" / "run" / "metrics.jsonl"  # parents are created
    log = train.writers.MetricsLog(str(path))
    assert isinstance(log.path, epath.Path)  # the same code path as gs://bucket/...
    for step in (5, 10, 15):
        log.write({"step": step, "loss": float(step)})
    log.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10, 15]
    # Resuming from the checkpoint at step 10 drops what the interrupted run logged after it.
    resumed = train.writers.MetricsLog(epath.Path(path), resume_step=10)
    resumed.write({"step": 15, "loss": -1.0})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(5, 5.0), (10, 10.0), (15, -1.0)]
    # A fresh run (no checkpoint) starts a new file.
    train.writers.MetricsLog(path).write({"step": 1})
    assert path.read_text() == '{"step": 1}\n'

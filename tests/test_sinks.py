"""Metric sinks besides metrics.jsonl (config.log): TensorBoard event files and W&B runs hold the
rows the run wrote, a resume re-sends nothing, and a missing optional package is one clear error.

The event files and W&B's offline run files are read back here with the packages' own protobuf
messages (tensorboardX writes; W&B's offline ``.wandb`` file is a LevelDB-style log of records)."""
from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import struct
import sys

import numpy as np
import pytest

from smac_jax.errors import ConfigError
from smac_jax.training import pipeline
from smac_jax.training.logger import MetricsLog, TensorBoardSink, global_step

tensorboardX = pytest.importorskip("tensorboardX")
wandb = pytest.importorskip("wandb")


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B's own settings, cache and artifacts in a temp dir; no W&B variables from outside."""
    for k in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(k)
    for k in ("CONFIG_DIR", "CACHE_DIR", "DATA_DIR", "ARTIFACT_DIR"):
        monkeypatch.setenv(f"WANDB_{k}", str(tmp_path / "wandb_home" / k.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")


# -- readers -------------------------------------------------------------------------------------
def _records(path: str, header: int = 0, block: int | None = None):
    """The payloads of a TFRecord file (header 0, no blocks) or of a W&B LevelDB-style log."""
    buf = open(path, "rb").read()
    pos, parts = header, b""
    if block is None:  # TFRecord: u64 length, u32 crc, data, u32 crc
        while pos + 12 <= len(buf):
            (n,) = struct.unpack("<Q", buf[pos:pos + 8])
            yield buf[pos + 12:pos + 12 + n]
            pos += 12 + n + 4
        return
    while pos + 7 <= len(buf):  # LevelDB log: 32 KiB blocks of (u32 crc, u16 length, u8 type, data)
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", buf[pos:pos + 7])
        if kind == 0 and n == 0:  # zero padding to the block's end
            pos += left
            continue
        parts += buf[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # a FULL record, or the LAST piece of one
            yield parts
            parts = b""


def read_tensorboard(run_dir: str) -> dict[str, dict[int, float]]:
    """tag -> {step: value}, every event file of the run in name order, as TensorBoard's Python
    loader reads them: a purge marker (SessionLog START at step s) drops the points at steps >= s."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for data in _records(path):
            e = Event.FromString(data)
            if e.HasField("session_log") and e.session_log.status == SessionLog.START:
                for points in out.values():
                    for s in [s for s in points if s >= e.step]:
                        del points[s]
            for v in e.summary.value:
                out.setdefault(v.tag, {})[e.step] = v.simple_value
    return out


def read_wandb(workdir: str) -> dict[str, dict]:
    """run name -> {"ids", "group", "dirs", "history": {step: {key: value}}} from the offline runs
    (a run's directories in name order, i.e. in time order: a later one's values win)."""
    from wandb.proto.wandb_internal_pb2 import Record

    runs: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))):
        assert open(path, "rb").read(4) == b":W&B"
        run = None
        for data in _records(path, header=7, block=32768):
            rec = Record.FromString(data)
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run = runs.setdefault(rec.run.display_name, {"ids": set(), "group": rec.run.run_group,
                                                             "dirs": 0, "history": {}})
                run["ids"].add(rec.run.run_id)
                run["dirs"] += 1
            elif kind == "history":
                item = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                run["history"].setdefault(rec.history.step.num, {}).update(
                    {k: v for k, v in item.items() if not k.startswith("_")})
    return runs


# -- tests ---------------------------------------------------------------------------------------
class Killed(BaseException):
    """A stand-in for the process being killed (no ``Exception``: nothing in the library catches it)."""


def test_tensorboard_and_wandb_hold_the_metrics_log(make_tiny_config, wandb_env, monkeypatch, tmp_path):
    """Killed after the offline evaluation at 150 (last checkpoint at 100) and resumed: both sinks
    hold exactly what metrics.jsonl holds, the cut rows replaced by the resumed run's."""
    config = make_tiny_config(**{"log.tensorboard": True, "log.wandb": True})
    workdir = str(tmp_path / "run")
    write = MetricsLog.write

    def write_then_kill(self, rows):
        write(self, rows)
        if (rows[0]["phase"], rows[0]["step"]) == ("offline", 150):
            raise Killed

    with contextlib.redirect_stdout(io.StringIO()):
        with monkeypatch.context() as mp:
            mp.setattr(MetricsLog, "write", write_then_kill)
            with pytest.raises(Killed):
                pipeline.run(config, workdir, progress=False)
        pipeline.run(config, workdir, resume=True, progress=False)
    rows = MetricsLog(os.path.join(workdir, "metrics.jsonl")).rows
    seeds = sorted({r["seed"] for r in rows})
    assert len(seeds) == config.n_seeds and {r["phase"] for r in rows} == {"offline", "online"}
    assert sorted(os.listdir(os.path.join(workdir, "tensorboard"))) == [f"seed_{s}" for s in seeds]
    wb = read_wandb(workdir)
    assert sorted(wb) == [f"seed_{s}" for s in seeds]
    for seed in seeds:
        tb = read_tensorboard(os.path.join(workdir, "tensorboard", f"seed_{seed}"))
        history = wb[f"seed_{seed}"]["history"]
        assert wb[f"seed_{seed}"]["group"] == "run"
        # the killed and the resumed process each wrote an offline run directory, with the same run id
        assert wb[f"seed_{seed}"]["dirs"] == 2 and len(wb[f"seed_{seed}"]["ids"]) == 1
        mine = [r for r in rows if r["seed"] == seed]
        for phase in ("offline", "online"):
            expected = {global_step(r, config.offline.steps): r["eval_return"] for r in mine if r["phase"] == phase}
            tag = f"{phase}/eval_return"
            assert sorted(tb[tag]) == sorted(expected)  # one point per evaluation, the cut ones hidden
            np.testing.assert_allclose([tb[tag][s] for s in sorted(expected)],  # float32 in event files
                                       [expected[s] for s in sorted(expected)], rtol=1e-6)
            assert {s: history[s][tag] for s in expected} == expected
        for r in mine:  # every scalar of every row, training metrics too
            step = global_step(r, config.offline.steps)
            for k, v in r.items():
                if k not in ("phase", "step", "seed"):
                    assert tb[f"{r['phase']}/{k}"][step] == pytest.approx(v, rel=1e-6)
                    assert history[step][f"{r['phase']}/{k}"] == v
        # the offline phase's last point and the online phase's first share one step
        assert {"offline/eval_return", "online/eval_return"} <= set(history[config.offline.steps])


def test_rows_already_in_the_file_are_not_resent(tmp_path):
    class Recorder:
        def __init__(self):
            self.written, self.kept, self.closed = [], None, False

        def write(self, rows):
            self.written += rows

        def truncate(self, kept):
            self.kept = list(kept)

        def close(self):
            self.closed = True

    path = str(tmp_path / "metrics.jsonl")
    MetricsLog(path).write([{"phase": "offline", "step": s, "seed": 0, "eval_return": float(s)} for s in (50, 100, 150)])
    sink = Recorder()
    log = MetricsLog(path, [sink])  # a resume: the file's rows are read, nothing goes out
    assert sink.written == [] and len(log.rows) == 3
    log.truncate(lambda r: r["step"] <= 100)
    assert [r["step"] for r in sink.kept] == [50, 100]
    log.write([{"phase": "offline", "step": 150, "seed": 0, "eval_return": np.float32(7.0)}])
    assert sink.written == [{"phase": "offline", "step": 150, "seed": 0, "eval_return": 7.0}]
    log.close()
    assert sink.closed


def test_tensorboard_hides_the_points_a_resume_cut(tmp_path):
    """Killed after the evaluations at 150 and 200 (last checkpoint at 100), resumed: the new event
    file's purge marker hides the cut points; the resumed values replace them."""
    def rows(steps, value):
        return [{"phase": "offline", "step": s, "seed": 0, "eval_return": value + s} for s in steps]

    sink = TensorBoardSink(str(tmp_path), offline_steps=200)
    sink.write(rows((50, 100, 150, 200), 0.0))
    sink.close()
    resumed = TensorBoardSink(str(tmp_path), offline_steps=200)
    resumed.truncate(rows((50, 100), 0.0))
    resumed.write(rows((150,), 1000.0) + [{"phase": "online", "step": 0, "seed": 0, "eval_return": -1.0}])
    resumed.close()
    assert len(glob.glob(str(tmp_path / "seed_0" / "events.out.tfevents.*"))) == 2
    tb = read_tensorboard(str(tmp_path / "seed_0"))
    assert tb["offline/eval_return"] == {50: 50.0, 100: 100.0, 150: 1150.0}  # 200 was cut, not re-reached yet
    assert tb["online/eval_return"] == {200: -1.0}


@pytest.mark.parametrize("flag,module,extra", [("tensorboard", "tensorboardX", "tensorboard"),
                                               ("wandb", "wandb", "wandb")])
def test_missing_package_is_one_clear_error(make_tiny_config, monkeypatch, tmp_path, flag, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf'log\.{flag}=True needs .*pip install "smac_jax\[{extra}\]"'):
        pipeline.run(make_tiny_config(**{f"log.{flag}": True}), str(workdir), progress=False)
    assert not workdir.exists()  # failed before the workdir was touched


def test_unknown_wandb_mode_is_named(make_tiny_config, tmp_path):
    with pytest.raises(ConfigError, match=r"log\.wandb_mode must be one of .* got 'ofline'"):
        pipeline.validate_config(make_tiny_config(**{"log.wandb": True, "log.wandb_mode": "ofline"}))

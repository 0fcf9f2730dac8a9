"""`train base` over two processes joined by jax.distributed on localhost (CPU, gloo), 2 devices each: the
losses of one process with 4 devices, the model written once by process 0 and loadable, both exit 0
(issue 19: process 0 used to hang in orbax's barrier while saving, and the job died at shutdown)."""
import json
import os
import socket
import subprocess
import sys

from test_pretrain import REPO, data, step_losses  # noqa: F401 (data is a fixture)

ARGS = ["--preset", "test", "--total-batch", "1024", "--steps", "6", "--eval-every", "3", "--save-every", "3"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pretrain(out, data, devices: int, extra=(), home=None):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "NANOCODE_HOME": str(home)}
    cmd = [sys.executable, "-m", "training.pretrain", *ARGS, "--out", str(out), "--data", str(data[0]),
           "--tokenizer", str(data[1]), *extra]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_processes_train_like_one_and_write_the_model_once(data, tmp_path):  # noqa: F811
    port = _free_port()
    procs = [_pretrain(tmp_path / "two", data, 2, ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                                   "--process-id", str(i)], tmp_path / f"home{i}")
             for i in range(2)]
    one = _pretrain(tmp_path / "one", data, 4, home=tmp_path / "home")
    outs = [p.communicate(timeout=240)[0] for p in (*procs, one)]
    assert [p.returncode for p in (*procs, one)] == [0, 0, 0], "\n\n".join(o[-3000:] for o in outs)
    two, single = step_losses(tmp_path / "two" / "log.jsonl"), step_losses(tmp_path / "one" / "log.jsonl")
    assert sorted(two) == sorted(single) == list(range(6))
    # the same batches, summed in another order by gloo: equal to ~1e-4
    assert max(abs(two[s] - single[s]) for s in single) < 1e-3, (two, single)
    from nanocode.checkpoint import load_model
    _, _, info = load_model(tmp_path / "two" / "model")
    assert info["meta"]["stage"] == "base" and info["meta"]["steps"] == 6
    assert json.loads((tmp_path / "two" / "complete.json").read_text())["step"] == 6
    assert not list((tmp_path / "two").glob(".model.tmp-*"))  # process 1 wrote no model of its own


def test_two_processes_killed_after_a_checkpoint_resume_with_the_same_losses(data, tmp_path):  # noqa: F811
    import signal
    import time

    def start(out, port, home):
        return [_pretrain(out, data, 2, ["--steps", "12", "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                                         "2", "--process-id", str(i)], home / str(i)) for i in range(2)]
    whole = start(tmp_path / "whole", _free_port(), tmp_path / "hw")
    killed = start(tmp_path / "killed", _free_port(), tmp_path / "hk")
    sealed = tmp_path / "killed" / "ckpt" / "3" / "sha256.json"  # written once the step-3 save is complete
    deadline = time.monotonic() + 180
    while not sealed.exists() and time.monotonic() < deadline and all(p.poll() is None for p in killed):
        time.sleep(0.05)
    for p in killed:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    assert sealed.exists(), "the run ended or stalled before its step-3 checkpoint"
    resumed = start(tmp_path / "killed", _free_port(), tmp_path / "hk")
    outs = [p.communicate(timeout=240)[0] for p in (*whole, *resumed)]
    assert [p.returncode for p in (*whole, *resumed)] == [0] * 4, "\n\n".join(o[-3000:] for o in outs)
    log = tmp_path / "killed" / "log.jsonl"
    assert any(json.loads(line).get("event") == "resume" for line in log.read_text().splitlines())
    after = step_losses(log, after_event="resume")
    reference = step_losses(tmp_path / "whole" / "log.jsonl")
    assert after and all(abs(after[s] - reference[s]) < 1e-6 for s in after), (after, reference)

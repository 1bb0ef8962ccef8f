"""A real one-node SLURM cluster (slurmctld + slurmd + munge) runs deploy/slurm/train.sbatch with 2 tasks.

The test starts the daemons itself with a configuration in a temporary folder (SLURM_CONF), and
stops the ones it started by their process ids. Where they cannot start it skips with their own
error text, except under CI=true, where that is a failure: CI runs as root and can start them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.train.test_distributed import _dataset

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "deploy" / "slurm" / "train.sbatch"
on_cluster = pytest.mark.usefixtures("slurm_cluster")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"local SLURM cluster unavailable under CI: {reason}")
    pytest.skip(f"local SLURM cluster unavailable: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_munge(started: list[subprocess.Popen]) -> None:
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        result = subprocess.run(["mungekey", "-c", "-k", str(key)], capture_output=True, text=True)
        if result.returncode != 0:
            _unavailable(f"mungekey: {result.stderr.strip()}")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    process = subprocess.Popen(
        ["munged", "--force", "--foreground"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    started.append(process)
    for _ in range(50):
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
            return
        if process.poll() is not None:
            _unavailable(f"munged exited: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.1)
    _unavailable("munged did not answer within 5 s")


@pytest.fixture
def slurm_cluster(tmp_path: Path) -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        _unavailable("not root")
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (apt-get install slurm-wlm munge)")
    started: list[subprocess.Popen] = []
    try:
        _ensure_munge(started)
        host = socket.gethostname()
        state = tmp_path / "slurm"
        (state / "spool").mkdir(parents=True)
        (state / "d").mkdir()
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        conf = state / "slurm.conf"
        conf.write_text(
            f"""ClusterName=stopsign-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SlurmUser=root
SlurmdUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation={state / "spool"}
SlurmdSpoolDir={state / "d"}
SlurmctldPidFile={state / "slurmctld.pid"}
SlurmdPidFile={state / "slurmd.pid"}
SlurmctldLogFile={state / "slurmctld.log"}
SlurmdLogFile={state / "slurmd.log"}
JobCompType=jobcomp/none
NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
        )
        env = {**os.environ, "SLURM_CONF": str(conf)}
        for daemon in ("slurmctld", "slurmd"):
            started.append(subprocess.Popen([daemon, "-D", "-f", str(conf)], env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True))  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for process in started[-2:]:
                if process.poll() is not None:
                    _unavailable(
                        f"{process.args[0]} exited: {process.stdout.read() if process.stdout else ''}"
                    )
            states = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
            ).stdout.split()
            if "idle" in states:
                break
            time.sleep(0.5)
        else:
            _unavailable(
                f"the node never became idle: {(state / 'slurmd.log').read_text()[-1000:] if (state / 'slurmd.log').exists() else ''}"
            )
        yield env
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_sbatch_is_shellcheck_clean(require_tool: Callable[[str, str], str]) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run(
        [shellcheck, "--severity=style", "--shell=bash", str(SBATCH)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# A job (or every task of an array) is over in these states; its exit code is then final.
FINISHED_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                   "BOOT_FAIL", "DEADLINE"}  # fmt: skip


def sbatch_and_wait(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``sbatch --wait ARGS``, answered within half a second of the job's end.

    ``sbatch --wait`` polls after 2, 10, 42, 74... s (its sleep grows x4 up to 32 s), so a
    15 s job costs a test 42 s and a 45 s one 74 s. This polls ``scontrol show job`` instead and
    returns like sbatch: the highest exit code over the array's tasks, stderr naming the states."""
    submitted = subprocess.run(["sbatch", "--parsable", *args], env=env, capture_output=True, text=True,
                               timeout=60, cwd=cwd)  # fmt: skip
    if submitted.returncode != 0:
        return submitted
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + timeout
    while True:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job], env=env, capture_output=True, text=True,
                               timeout=30)  # fmt: skip
        records = [dict(field.split("=", 1) for field in line.split() if "=" in field)
                   for line in shown.stdout.splitlines() if line.strip()]  # fmt: skip
        states = [record.get("JobState", "") for record in records]
        if shown.returncode == 0 and states and all(state in FINISHED_STATES for state in states):
            # ExitCode=STATUS:SIGNAL; a task killed by a signal counts as 1, as sbatch --wait does.
            codes = [int(code) if signal == "0" else 1
                     for code, signal in (record["ExitCode"].split(":") for record in records)]  # fmt: skip
            return subprocess.CompletedProcess(submitted.args, max(codes), job, f"job {job}: {states}")
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job], env=env, timeout=30)
            raise TimeoutError(f"SLURM job {job} still {states} after {timeout:.0f} s: {shown.stderr}")
        time.sleep(0.5)


def _job_env(cluster: dict[str, str], tmp_path: Path, **extra: str) -> dict[str, str]:
    data = _dataset(tmp_path / "data")
    return {
        **cluster,
        "DATA": str(data), "REPO": str(REPO), "VENV": str(Path(sys.executable).parent.parent), "DEVICE": "cpu",
        "IMG": "64", "EPOCHS": "1", "BATCH": "4", "PROJECT": str(tmp_path / "runs"), "NAME": "slurm",
        "EXTRA_ARGS": "--workers 0 --cfg yolov5n", "OMP_NUM_THREADS": "1",
        # The script's default port is 20000 + job id, and every test cluster's first job is job 1:
        # two tests at once (run.sh runs two test workers) would both listen on 20001.
        "MASTER_PORT": str(_free_port()), **extra,
    }  # fmt: skip


# The script asks for GPUs and 4 CPUs per task; this one-node cluster has neither: override.
CPU_SHAPE = ["--nodes=1", "--gpus-per-node=0", "--cpus-per-task=1"]


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "shape"),
    [("srun", ["--ntasks-per-node=2"]), ("torchrun", ["--ntasks-per-node=1", "--cpus-per-task=2"])],
)
def test_sbatch_trains_with_two_ranks(
    slurm_cluster: dict[str, str], tmp_path: Path, launcher: str, shape: list[str]
) -> None:
    """srun: 2 SLURM tasks, one rank each; torchrun: 1 task running torchrun with 2 ranks (c10d)."""
    env = _job_env(slurm_cluster, tmp_path, LAUNCHER=launcher, NPROC_PER_NODE="2")
    log = tmp_path / "job.out"
    result = sbatch_and_wait(
        [*CPU_SHAPE, *shape, f"--output={log}", "--export=ALL", str(SBATCH)], env, tmp_path
    )
    text = log.read_text() if log.exists() else ""
    assert result.returncode == 0, f"{result.stderr}\n{text[-3000:]}"
    assert "rank 0/2" in text and "rank 1/2" in text, text[-3000:]
    assert "done: 1 epoch(s)" in text, text[-3000:]  # rank 0's summary line
    run = tmp_path / "runs" / "slurm"
    assert (run / "weights" / "last" / "spec.json").is_file()
    assert len((run / "results.csv").read_text().splitlines()) == 2  # header + epoch 1, written once


def _job_state(env: dict[str, str], job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.slurm
@pytest.mark.slow
def test_preempted_job_requeues_and_resumes(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    """The USR1 warning makes the script requeue itself; the restarted job resumes from weights/last."""
    env = _job_env(slurm_cluster, tmp_path, EPOCHS="200")
    log = tmp_path / "job.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", *CPU_SHAPE, "--ntasks-per-node=2", f"--output={log}", "--export=ALL", str(SBATCH)],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    last = tmp_path / "runs" / "slurm" / "weights" / "last" / "spec.json"
    try:
        deadline = time.monotonic() + 300
        while not last.is_file():
            assert time.monotonic() < deadline, log.read_text()[-3000:] if log.exists() else "no log"
            time.sleep(1)
        # What SLURM sends before preemption (--signal=B:USR1@120), sent now.
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=env, check=True, timeout=30)
        released = False
        while "resuming" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            if not released and _job_state(env, job) == "PENDING":
                # SLURM holds a requeued job back for a while; the test need not wait for that.
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, timeout=30)
                released = True
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job], env=env, timeout=30)
        while _job_state(env, job) not in ("", "CANCELLED"):
            time.sleep(0.5)
    text = log.read_text()
    assert f"preempted: requeueing {job}" in text, text[-3000:]
    assert "left the process group (Terminated)" in text, text[-3000:]  # the tasks stopped cleanly


TUNE_SBATCH = REPO / "deploy" / "slurm" / "tune.sbatch"


def test_tune_sbatch_is_shellcheck_clean(require_tool: Callable[[str, str], str]) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    result = subprocess.run([shellcheck, "--severity=style", "--shell=bash", str(TUNE_SBATCH)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_tune_array_of_two_workers_shares_one_study(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    """sbatch --array=0-1: two search workers on one journal study; 4 trials in all, none twice."""
    optuna = pytest.importorskip("optuna")
    space = tmp_path / "space.yaml"
    space.write_text("lr0: {low: 0.002, high: 0.03, log: true}\nmomentum: {low: 0.8, high: 0.95}\n")
    out = tmp_path / "tune"
    env = {**_job_env(slurm_cluster, tmp_path), "TRIALS": "4", "OUT": str(out), "DEVICE": "cpu",
           "EXTRA_ARGS": f"--workers 0 --space {space} --pruner none"}  # fmt: skip
    result = sbatch_and_wait(
        ["--array=0-1", "--nodes=1", "--gpus-per-task=0", "--cpus-per-task=1",
         f"--output={tmp_path}/tune-%a.out", "--export=ALL", str(TUNE_SBATCH)], env, tmp_path,
    )  # fmt: skip
    logs = [
        (tmp_path / f"tune-{i}.out").read_text() for i in range(2) if (tmp_path / f"tune-{i}.out").exists()
    ]
    assert result.returncode == 0, f"{result.stderr}\n" + "\n".join(log[-2000:] for log in logs)
    assert len(logs) == 2 and all("tune worker" in log for log in logs), logs
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    )
    trials = optuna.load_study(study_name="stopsign", storage=storage).trials
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert 4 <= len(finished) <= 5, [t.state.name for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both array tasks ran trials


@pytest.mark.slurm
@pytest.mark.slow
def test_tune_worker_can_be_a_torchrun_ddp_run(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    """RANKS_PER_WORKER=2: the array task runs torchrun; both ranks train each trial of the study."""
    pytest.importorskip("optuna")
    space = tmp_path / "space.yaml"
    space.write_text("lr0: {low: 0.002, high: 0.03, log: true}\n")
    out = tmp_path / "tune"
    env = {**_job_env(slurm_cluster, tmp_path), "TRIALS": "2", "OUT": str(out), "DEVICE": "cpu",
           "RANKS_PER_WORKER": "2", "EXTRA_ARGS": f"--workers 0 --space {space} --pruner none"}  # fmt: skip
    log = tmp_path / "tune-0.out"
    result = sbatch_and_wait(
        ["--array=0-0", "--nodes=1", "--ntasks=1", "--gpus-per-task=0", "--cpus-per-task=2",
         f"--output={log}", "--export=ALL", str(TUNE_SBATCH)], env, tmp_path,
    )  # fmt: skip
    text = log.read_text() if log.exists() else ""
    assert result.returncode == 0, f"{result.stderr}\n{text[-3000:]}"
    assert "rank 1/2 of this search worker" in text, text[-3000:]
    assert text.count("DDP over 2 ranks") == 2, text[-3000:]  # each trial trained by both ranks
    assert (out / "best_hyp.yaml").is_file()

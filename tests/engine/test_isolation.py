"""A datum sees what a Pachyderm worker pod would, and nothing it does changes committed data.

Each test runs an attack a buggy or hostile pipeline could make, through the real
engine, and asserts the outcome: committed bytes unchanged, no process of the
datum alive after its job, other secrets and the state directory out of reach,
the caller's environment invisible, unstorable outputs refused by name.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from pachlocal.sandbox import detect

from .conftest import Pachlocal, job_rows

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory) -> None:
    sandbox = detect(tmp_path_factory.mktemp("probe"))
    if sandbox.mode != "namespace":
        pytest.skip(f"datum isolation needs mount namespaces (root on Linux): {sandbox.notes}")


def spec(name: str, script: str, glob: str = "/*", **extra: Any) -> dict[str, Any]:
    transform = {"cmd": ["sh", "-c", script], **extra.pop("transform", {})}
    return {
        "pipeline": {"name": name},
        "transform": transform,
        "input": {"pfs": {"repo": "in", "glob": glob}},
        **extra,
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def alive(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def report(pl: Pachlocal, ref: str) -> dict[str, str]:
    """``name=value`` lines a datum wrote to ``/report`` in its output."""
    text = pl.get(f"{ref}:/report").decode()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def store_is_intact(pl: Pachlocal) -> None:
    assert pl("fsck").rc == 0
    for obj in (pl.home / "objects").glob("*/*"):
        assert sha(obj.read_bytes()) == obj.name, f"object {obj.name} was changed"


# 1. inputs cannot be used to change committed objects --------------------------------------

WRITE_THROUGH_INPUTS = """
r() { if eval "$2" 2>/dev/null; then echo "$1=changed"; else echo "$1=refused"; fi >> /pfs/out/report; }
r append 'echo EVIL >> /pfs/in/a'
r rplus 'printf EVIL | dd of=/pfs/in/a conv=notrunc status=none'
r chmod 'chmod 666 /pfs/in/a'
r remount 'mount -o remount,rw /pfs/in'
r hardlink 'ln /pfs/in/a /pfs/out/linked && echo EVIL >> /pfs/out/linked'
r hostroot 'echo EVIL >> "$PFS_HOST_ROOT/in/a"'
cat /pfs/in/a > /pfs/out/copy
"""


def test_a_datum_cannot_change_committed_input_bytes(pl: Pachlocal, write: Any) -> None:
    pl("create", "repo", "in")
    pl("create", "repo", "twin")  # another repo sharing the very same object
    pl("put", "file", "in@master:/a", "-f", str(write("a", "precious\n")))
    pl("put", "file", "twin@master:/a", "-f", str(write("a", "precious\n")))
    pl("create", "pipeline", "-f", pl.spec(pl.home.parent, spec("attack", WRITE_THROUGH_INPUTS)))

    assert report(pl, "attack@master") == {
        "append": "refused",
        "rplus": "refused",
        "chmod": "refused",
        "remount": "refused",
        "hardlink": "refused",
        "hostroot": "refused",
    }
    assert pl.files("in@master") == pl.files("twin@master") == {"/a": b"precious\n"}
    assert pl.get("attack@master:/copy") == b"precious\n"
    store_is_intact(pl)


# 2. no process of a datum outlives it --------------------------------------------------------

LINGERING = """
exec 3>>/pfs/out/g
echo first >&3
(sleep 1; echo LATE >&3) &
setsid sh -c 'sleep 4242; echo ESCAPED >> /pfs/out/g' &
nohup sh -c 'sleep 4243' >/dev/null 2>&1 &
exit 0
"""


@pytest.mark.parametrize("mode", ["namespace", "remap"])
def test_background_processes_die_with_the_datum_and_cannot_change_its_output(
    pl: Pachlocal, write: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACHLOCAL_SANDBOX", mode)  # remap mode kills by cgroup too
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    started = time.monotonic()
    pl("create", "pipeline", "-f", pl.spec(pl.home.parent, spec("linger", LINGERING)))
    assert time.monotonic() - started < 10  # the job did not wait for its background
    assert alive("sleep 4242") == [] and alive("sleep 4243") == []
    committed = pl.get("linger@master:/g")
    time.sleep(1.5)  # past the moment the background writer would have written
    assert committed == pl.get("linger@master:/g") == b"first\n"
    store_is_intact(pl)


def test_a_timed_out_datum_leaves_no_process(pl: Pachlocal, write: Any) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    script = "sleep 4244 & setsid sleep 4245 & sleep 4246"
    doc = spec("slow", script, datumTimeout="1s", datumTries=1)
    pl("create", "pipeline", "-f", pl.spec(pl.home.parent, doc))
    (job,) = job_rows(pl, "slow")
    assert job["state"] == "failure"
    assert "timed out after 1s" in job["reason"]
    assert [alive(f"sleep {n}") for n in (4244, 4245, 4246)] == [[], [], []]


ORPHAN = """
if [ -e "$STARTED" ]; then echo retried > /pfs/out/a; exit 0; fi
( while true; do echo tick >> "$SIDE"; sleep 0.02; done ) &
setsid sh -c 'while true; do echo tock >> "$SIDE"; sleep 0.02; done' &
touch "$STARTED"
sleep 4247
"""


@pytest.mark.slow  # several seconds: the full tier only
def test_orphans_of_a_killed_engine_are_reaped_before_the_job_is_retried(
    tmp_path: Path, write: Any
) -> None:
    home, side, started = tmp_path / "state", tmp_path / "side-effects", tmp_path / "started"
    env = {**os.environ, "PACHLOCAL_HOME": str(home)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pachlocal.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    cli("create", "repo", "in")
    doc = spec("orphans", ORPHAN, transform={"env": {"SIDE": str(side), "STARTED": str(started)}})
    (tmp_path / "orphans.json").write_text(json.dumps(doc))
    cli("create", "pipeline", "-f", str(tmp_path / "orphans.json"))
    engine = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pachlocal.cli",
            "put",
            "file",
            "in@master:/a",
            "-f",
            str(write("a", "x")),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline, "the datum never started"
        time.sleep(0.01)
    engine.send_signal(signal.SIGKILL)
    engine.wait()
    # the datum's main process dies with the engine; what it left behind is killed by the
    # next writer before the job runs again
    cli("run")
    assert alive("sleep 4247") == []
    size = side.stat().st_size
    time.sleep(0.3)
    assert side.stat().st_size == size, "a process of the killed datum still writes"
    jobs = json.loads(cli("list", "job", "-p", "orphans", "--raw").stdout)
    assert [j["state"] for j in jobs] == ["success", "success"]  # creation, then the put
    assert cli("fsck").returncode == 0


# 3. the state directory, other secrets and other repos are out of reach --------------------

PROBE_STATE = """
r() { if eval "$2" >/dev/null 2>&1; then echo "$1=yes"; else echo "$1=no"; fi >> /pfs/out/report; }
r state_listed '[ -n "$(ls -A "$STATE")" ]'
r meta_db 'test -e "$STATE/meta.db"'
r objects 'test -e "$STATE/objects"'
r write_db 'echo x >> "$STATE/meta.db"'
r other_secret 'cat "$STATE/secrets/other.json"'
r host_root 'test -e "$PFS_HOST_ROOT/in"'
r other_repo 'test -e /pfs/twin'
r engine_environ 'grep -q CANARY /proc/$ENGINE_PID/environ'
r engine_root 'ls /proc/$ENGINE_PID/root/'
r cgroups 'test -e /sys/fs/cgroup/cgroup.procs || test -e /sys/fs/cgroup/unified/cgroup.procs'
r mknod 'mknod /pfs/out/dev c 1 3'
r own_secret 'test "$(cat /var/secrets/mine/token)" = s3cret-mine'
r own_secret_write 'echo x >> /var/secrets/mine/token'
r own_tmp 'echo t > /tmp/probe && test "$(cat /tmp/probe)" = t'
"""


def secret_file(tmp: Path, name: str, value: str) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"token": base64.b64encode(value.encode()).decode()},
    }
    path = tmp / f"{name}.secret.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_datum_cannot_reach_the_state_directory_other_secrets_or_the_engine(
    pl: Pachlocal, write: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAK_CANARY", "CANARY-in-the-callers-environment")
    tmp = pl.home.parent
    pl("create", "repo", "in")
    pl("create", "repo", "twin")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    pl("create", "secret", "-f", secret_file(tmp, "mine", "s3cret-mine"))
    pl("create", "secret", "-f", secret_file(tmp, "other", "s3cret-other"))
    doc = spec(
        "probe",
        PROBE_STATE,
        transform={
            "env": {"STATE": str(pl.home.resolve()), "ENGINE_PID": str(os.getpid())},
            "secrets": [{"name": "mine", "mountPath": "/var/secrets/mine"}],
        },
    )
    pl("create", "pipeline", "-f", pl.spec(tmp, doc))
    assert report(pl, "probe@master") == {
        "state_listed": "no",
        "meta_db": "no",
        "objects": "no",
        "write_db": "no",
        "other_secret": "no",
        "host_root": "no",
        "other_repo": "no",
        "engine_environ": "no",
        "engine_root": "no",
        "cgroups": "no",
        "mknod": "no",
        "own_secret": "yes",
        "own_secret_write": "no",
        "own_tmp": "yes",
    }
    assert not Path("/tmp/probe").exists() or Path("/tmp/probe").read_text() != "t\n"
    store_is_intact(pl)


# 4. the caller's environment is invisible ----------------------------------------------------


@pytest.mark.parametrize("mode", ["namespace", "remap"])
def test_the_datum_environment_comes_from_the_spec_alone(
    pl: Pachlocal, write: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("PACHLOCAL_SANDBOX", mode)
    monkeypatch.setenv("PGSQL_URL", "postgresql://caller:leaked@db/lens")
    monkeypatch.setenv("LANG", "C.UTF-8")
    tmp = pl.home.parent
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    pl("create", "secret", "-f", secret_file(tmp, "mine", "from-the-secret"))
    doc = spec(
        "envs",
        "env -0 > /pfs/out/env",
        transform={
            "env": {"FROM_SPEC": "1"},
            "secrets": [{"name": "mine", "key": "token", "envVar": "TOKEN"}],
        },
    )
    pl("create", "pipeline", "-f", pl.spec(tmp, doc))
    env = dict(
        item.split("=", 1) for item in pl.get("envs@master:/env").decode().split("\0") if item
    )
    (job,) = job_rows(pl, "envs")
    shell = {"PWD", "SHLVL", "_", "OLDPWD"}
    assert set(env) - shell == {
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "TMP",
        "TEMP",
        "FROM_SPEC",
        "TOKEN",
        "PPS_PIPELINE_NAME",
        "PPS_PROJECT_NAME",
        "PPS_NAMESPACE",
        "PPS_SPEC_COMMIT",
        "PPS_POD_NAME",
        "PACH_JOB_ID",
        "PACH_OUTPUT_COMMIT_ID",
        "PACH_DATUM_ID",
        "in",
        "in_COMMIT",
        "PFS_HOST_ROOT",
    } | ({"TZ", "JAVA_HOME"} & set(os.environ)) | {k for k in os.environ if k.startswith("LC_")}
    assert env["TOKEN"] == "from-the-secret" and env["FROM_SPEC"] == "1"
    assert env["PACH_JOB_ID"] == job["id"]
    assert env["HOME"] == env["TMPDIR"] == env["TMP"] == env["TEMP"]
    # the spec commit is the commit set that created the pipeline: here, the first job's
    assert env["PPS_SPEC_COMMIT"] == job["id"]
    assert env["PPS_NAMESPACE"] == env["PPS_PROJECT_NAME"] == "default"
    assert env["PPS_POD_NAME"].startswith("default-envs-v1-")
    if mode == "namespace":
        assert env["TMPDIR"] == "/tmp"
    else:  # a private directory of the datum's scratch space
        assert env["TMPDIR"].startswith(str(pl.home / "work"))
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


# 5. outputs: regular files and directories with clean names only ----------------------------


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("mkfifo /pfs/out/f", "output /f is a FIFO: only regular files and directories"),
        (
            "python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('/pfs/out/s')\"",
            "output /s is a socket: only regular files and directories",
        ),
        ("mkdir /pfs/out/d && mkfifo /pfs/out/d/f", "output /d/f is a FIFO"),
        ("touch '/pfs/out/a\nb'", "output '/a\\nb': the name holds a control character"),
        ("touch \"/pfs/out/$(printf 'x\\001')\"", "output '/x\\x01': the name holds a control"),
        (
            "touch \"/pfs/out/$(printf '\\377')\"",
            "output b'/\\xff': the name is not valid UTF-8",
        ),
        ("ln -s /etc/passwd /pfs/out/p", "output /p links outside /pfs: /etc/passwd"),
        ("ln -s /pfs/in /pfs/out/dir", "output /dir links to /pfs/in, which is not a regular"),
        ("ln -s /pfs/nowhere /pfs/out/x", "output /x links to /pfs/nowhere, which is not a"),
    ],
    ids=[
        "fifo",
        "socket",
        "nested-fifo",
        "newline",
        "control",
        "not-utf8",
        "outside",
        "dir",
        "dangling",
    ],
)
def test_unstorable_outputs_fail_the_datum_naming_the_path(
    pl: Pachlocal, write: Any, script: str, reason: str
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "x")))
    doc = spec("bad", f"echo ok > /pfs/out/fine; {script}", glob="/", datumTries=1)
    pl("create", "pipeline", "-f", pl.spec(pl.home.parent, doc))
    (job,) = job_rows(pl, "bad")
    assert job["state"] == "failure"
    assert reason in job["reason"], job["reason"]
    assert pl.files("bad@master") == {}
    # nothing is stuck: the next write goes through and runs the job again, failing the same way
    pl("put", "file", "in@master:/b", "-f", str(write("b", "y")))
    assert [j["state"] for j in job_rows(pl, "bad")] == ["failure", "failure"]
    store_is_intact(pl)


def test_a_symlink_to_an_input_file_stores_its_content_and_a_hard_link_is_copied(
    pl: Pachlocal, write: Any
) -> None:
    pl("create", "repo", "in")
    pl("put", "file", "in@master:/a", "-f", str(write("a", "content\n")))
    script = "ln -s /pfs/in/a /pfs/out/l; echo mine > /pfs/out/m; ln /pfs/out/m /pfs/out/m2"
    pl("create", "pipeline", "-f", pl.spec(pl.home.parent, spec("links", script, glob="/")))
    assert pl.files("links@master") == {"/l": b"content\n", "/m": b"mine\n", "/m2": b"mine\n"}
    store_is_intact(pl)


def test_parallel_datums_each_have_their_own_tmp(pl: Pachlocal, write: Any) -> None:
    pl("create", "repo", "in")
    for name in "abcd":
        pl("put", "file", f"in@master:/{name}", "-f", str(write(name, name)))
    script = (
        "ls -A /tmp > /pfs/out/$(basename $in).before; "
        "cp $in /tmp/mine; sleep 0.2; cat /tmp/mine > /pfs/out/$(basename $in)"
    )
    doc = spec("tmps", script, parallelismSpec={"constant": 2})
    pl("create", "pipeline", "-f", pl.spec(pl.home.parent, doc))
    files = pl.files("tmps@master")
    assert {k: v for k, v in files.items() if not k.endswith(".before")} == {
        f"/{n}": n.encode() for n in "abcd"
    }
    # no datum sees another's file (a checkout under /tmp may show as its own directory)
    befores = [v.split() for k, v in files.items() if k.endswith(".before")]
    assert len(befores) == 4 and not any(b"mine" in names for names in befores)


# 7. what would wedge the queue is refused when it is created -------------------------------


def test_a_secret_mount_below_an_existing_file_is_refused_at_create(
    pl: Pachlocal, write: Any
) -> None:
    tmp = pl.home.parent
    blocker = tmp / "a-file"
    blocker.write_text("not a directory")
    pl("create", "repo", "in")
    pl("create", "secret", "-f", secret_file(tmp, "mine", "v"))
    mount = f"{blocker}/below"
    doc = spec("m", "true", transform={"secrets": [{"name": "mine", "mountPath": mount}]})
    res = pl("create", "pipeline", "-f", pl.spec(tmp, doc), ok=False)
    assert res.rc != 0
    assert (
        f"transform.secrets[0].mountPath: '{mount}': {blocker} exists and is not a directory"
        in res.err
    )
    assert pl("list", "pipeline", "--raw").json() == []


@pytest.mark.parametrize("key", ["..", ".", "a/b", ""])
def test_a_secret_key_that_is_no_file_name_is_refused(pl: Pachlocal, key: str) -> None:
    tmp = pl.home.parent
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {key: "v"},
    }
    path = tmp / "bad.secret.json"
    path.write_text(json.dumps(doc))
    res = pl("create", "secret", "-f", str(path), ok=False)
    assert res.rc != 0 and f"stringData.{key}: invalid key name" in res.err
    assert "v\n" not in res.err


def test_code_under_tmp_stays_visible_and_a_state_inside_it_stays_hidden(
    write: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout under /tmp (a CI clone): the datum's private /tmp keeps the code root,
    and the state directory inside it stays hidden."""
    code = Path(tempfile.mkdtemp(prefix="pachlocal-code-", dir="/tmp"))
    try:
        (code / "pipelines").mkdir()
        (code / "pipelines" / "step.sh").write_text(
            'cp /pfs/in/a /pfs/out/a; if test -e "$STATE/meta.db"; then echo seen > /pfs/out/leak; fi\n'
        )
        home = code / ".pachlocal"
        monkeypatch.setenv("PACHLOCAL_HOME", str(home))
        pl = Pachlocal(home, capsys)
        pl("create", "repo", "in")
        pl("put", "file", "in@master:/a", "-f", str(write("a", "code ran\n")))
        doc = spec("coded", "true", transform={"env": {"STATE": str(home)}})
        doc["transform"]["cmd"] = ["sh", "pipelines/step.sh"]
        pl("create", "pipeline", "-f", pl.spec(code, doc))
        assert pl.files("coded@master") == {"/a": b"code ran\n"}
    finally:
        shutil.rmtree(code, ignore_errors=True)

"""Datum running: where a datum meets the isolation a worker pod gives it.

A :class:`DatumRunner` runs the datums of one job: it materialises each datum's
``/pfs`` (bind mounts in namespace mode, copies otherwise), builds the datum's
environment from the spec alone (its ``env``, its own secrets, Pachyderm's variables),
runs the transform in the :class:`~pachlocal.sandbox.Sandbox` with the spec's retries
and timeout, and collects ``/pfs/out`` into content-addressed objects. Nothing here
touches the store's database: a job's thread runs only this.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import os
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datums import Datum, DatumInput
from .sandbox import Mounts, Sandbox
from .secrets import SecretStore
from .spec import duration_seconds, input_leaves
from .store import Entry, ObjectStore


@dataclass
class DatumOutcome:
    """What running one datum produced."""

    datum: Datum
    hash: str
    state: str
    outputs: list[Entry] = field(default_factory=list)
    log: list[tuple[int, str]] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0
    reason: str = ""


def input_json(i: DatumInput) -> dict[str, Any]:
    return {
        "name": i.name,
        "repo": i.repo,
        "branch": i.branch,
        "commit": i.commit,
        "path": i.path,
        "files": [[f.path, f.hash, f.size] for f in i.files],
        "join_on": i.join_on,
        "group_by": i.group_by,
    }


class DatumRunner:
    """Runs datums of one job: materialise ``/pfs``, run with retries, collect outputs."""

    def __init__(
        self,
        *,
        home: Path,
        objects: ObjectStore,
        secrets: SecretStore,
        sandbox: Sandbox,
        pipeline: str,
        job_id: str,
        pipe: Mapping[str, Any],
        code_root: Path,
    ) -> None:
        self.home = home
        self.secrets = secrets
        self.pipeline = pipeline
        self.job_id = job_id
        self.pipe = pipe
        self.spec = spec = pipe["spec"]
        self.transform = spec["transform"]
        self.code_root = code_root
        self.objects = objects
        self.sandbox = sandbox
        # jobs of one commit set share an id and may run at once: paths name the pipeline too
        self.work = home / "work" / "jobs" / pipeline / job_id
        self.secret_dir = home / "work" / "secrets" / pipeline / job_id
        self.timeout = duration_seconds(spec["datumTimeout"]) if spec.get("datumTimeout") else None
        self.tries = max(1, int(spec.get("datumTries", 3)))
        self.accept = {0, *[int(c) for c in self.transform.get("acceptReturnCode") or []]}
        self.base_env, self.secret_binds = self._base_env()
        self.copy_inputs = self.sandbox.mode != "namespace"
        self.cancelled = threading.Event()
        # the code and the interpreter stay visible even where they live under /tmp
        interpreter = (sys.prefix, sys.base_prefix, str(Path(sys.executable).parent))
        self.keep = tuple(Path(p).resolve() for p in (code_root, *interpreter))

    def _base_env(self) -> tuple[dict[str, str], list[tuple[Path, str]]]:
        """The datum's environment from the spec alone (its ``env`` and ``secrets``) and
        Pachyderm's variables, over what stands in for the image: ``PATH`` with the
        engine's interpreter first, the locale, ``TZ`` and ``JAVA_HOME``. Nothing else
        of the caller's environment reaches the datum."""
        env = runtime_env(os.environ)
        env.update(self.transform.get("env") or {})
        env["PPS_PIPELINE_NAME"] = self.pipeline
        env["PPS_PROJECT_NAME"] = "default"
        env["PPS_NAMESPACE"] = "default"
        env["PPS_SPEC_COMMIT"] = self.pipe["spec_commit"]
        # a worker pod's name: <project>-<pipeline>-v<version>-<5 characters>
        suffix = hashlib.sha256(self.job_id.encode()).hexdigest()[:5]
        env["PPS_POD_NAME"] = f"default-{self.pipeline}-v{self.pipe['version']}-{suffix}"
        env["PACH_JOB_ID"] = self.job_id
        env["PACH_OUTPUT_COMMIT_ID"] = self.job_id
        binds: list[tuple[Path, str]] = []
        for s in self.transform.get("secrets") or []:
            values = self.secrets.get(s["name"])
            if s.get("envVar"):
                env[s["envVar"]] = values[s["key"]].decode()
            if s.get("mountPath"):
                src = self.secret_dir / s["name"]
                src.mkdir(parents=True, exist_ok=True, mode=0o700)
                for key, value in values.items():
                    fd = os.open(src / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(value)
                if self.sandbox.mode == "namespace":
                    os.makedirs(s["mountPath"], exist_ok=True)
                binds.append((src, s["mountPath"].rstrip("/") or "/"))
        return env, binds

    def cancel(self) -> None:
        self.cancelled.set()

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.secret_dir, ignore_errors=True)

    def run_all(
        self,
        todo: Sequence[tuple[Datum, str]],
        on_done: Callable[[int], None],
    ) -> list[DatumOutcome]:
        """Run ``todo`` on the spec's ``parallelismSpec`` threads (at most one per core),
        calling ``on_done`` with the count finished after each; outcomes in ``todo``'s order."""
        constant = int(self.spec["parallelismSpec"].get("constant", 1) or 1)
        workers = max(1, min(constant, os.cpu_count() or 1))
        results: list[DatumOutcome] = []
        # datums start from pool threads only: each drops what a datum may not hold from
        # its own capability bounding set once (the engine's main thread keeps its own)
        with cf.ThreadPoolExecutor(workers, initializer=self.sandbox.prepare_thread) as pool:
            futures = [pool.submit(self.run, d, h) for d, h in todo]
            try:
                for fut in cf.as_completed(futures):
                    results.append(fut.result())
                    on_done(len(results))
            except BaseException:
                self.cancel()
                for fut in futures:
                    fut.cancel()
                raise
        order = {d.id: i for i, (d, _) in enumerate(todo)}
        results.sort(key=lambda o: order[o.datum.id])
        return results

    def run(self, datum: Datum, digest: str) -> DatumOutcome:
        outcome = DatumOutcome(datum, digest, "failed")
        scratch = self.work / datum.id
        try:
            pfs = self._materialise(datum, scratch)
            tmp = scratch / "tmp"
            tmp.mkdir(mode=0o1777)
            env = dict(self.base_env)
            private_tmp = "/tmp" if self.sandbox.mode == "namespace" else str(tmp)
            env.setdefault("HOME", private_tmp)
            for name in ("TMPDIR", "TMP", "TEMP"):  # the temp dir every runtime looks up
                env.setdefault(name, private_tmp)
            for i in datum.inputs:
                env[i.name] = f"/pfs/{i.name}{i.path if i.path != '/' else ''}"
                env[f"{i.name}_COMMIT"] = i.commit
                if i.join_on:
                    env[f"PACH_DATUM_{i.name}_JOIN_ON"] = i.join_on
                if i.group_by:
                    env[f"PACH_DATUM_{i.name}_GROUP_BY"] = i.group_by
            env["PACH_DATUM_ID"] = datum.id
            # pachlocal's extension: the host directory behind this datum's /pfs,
            # for a service outside the datum's namespace (a Spark Connect server)
            env["PFS_HOST_ROOT"] = str(pfs)
            mounts = Mounts(
                pfs,
                tuple(sorted({i.name for i in datum.inputs})),
                tuple(self.secret_binds),
                tmp=tmp,
                hidden=(self.home.resolve(),),
                keep=self.keep,
            )
            ran = self._attempts(outcome, env, mounts, pfs)
            if ran == "success":
                # success only once every output is stored: a collection error (say, a full
                # disk) must fail the datum, not commit it with outputs missing
                outcome.outputs = self._collect(datum, pfs / "out")
            outcome.state = ran
        except OutputError as exc:
            outcome.reason = str(exc)
        except OSError as exc:
            outcome.reason = f"engine error preparing or collecting the datum: {exc}"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return outcome

    def _cwd(self) -> Path:
        return self.code_root

    def _attempts(
        self, outcome: DatumOutcome, env: Mapping[str, str], mounts: Mounts, pfs: Path
    ) -> str:
        """Run the command up to ``datumTries`` times: ``success``, else ``recovered`` when
        ``errCmd`` (run after every failed try, as pachd's worker does) exited 0 after the
        last one, else ``failed``."""
        stdin = _stdin(self.transform.get("stdin"))
        recovered = False
        for attempt in range(1, self.tries + 1):
            if self.cancelled.is_set():
                outcome.reason = "cancelled"
                return "failed"
            if attempt > 1:
                shutil.rmtree(pfs / "out", ignore_errors=True)
                (pfs / "out").mkdir()
            outcome.attempts = attempt
            res = self.sandbox.run(
                self.transform["cmd"],
                stdin=stdin,
                env=env,
                cwd=self._cwd(),
                mounts=mounts,
                timeout=self.timeout,
                cancel=self.cancelled,
            )
            outcome.seconds += res.seconds
            text = res.output.decode(errors="replace")
            if text:
                outcome.log.append((attempt, text))
            if res.error:
                outcome.reason = res.error
            elif res.timed_out:
                outcome.reason = f"datum timed out after {self.timeout:g}s"
            elif res.returncode not in self.accept:
                outcome.reason = (
                    f"command was killed by {_signal_name(-res.returncode)}"
                    if res.returncode < 0  # e.g. SIGXFSZ past a file size limit
                    else f"command exited with code {res.returncode}"
                )
            else:
                return "success"
            outcome.log.append(
                (attempt, f"attempt {attempt}/{self.tries} failed: {outcome.reason}")
            )
            recovered = self._err_cmd(outcome, attempt, env, mounts, pfs)
        return "recovered" if recovered else "failed"

    def _err_cmd(
        self, outcome: DatumOutcome, attempt: int, env: Mapping[str, str], mounts: Mounts, pfs: Path
    ) -> bool:
        """Run ``errCmd`` after a failed try (with an empty ``/pfs/out``); True if it exited 0."""
        if not self.transform.get("errCmd") or self.cancelled.is_set():
            return False
        shutil.rmtree(pfs / "out", ignore_errors=True)
        (pfs / "out").mkdir()
        res = self.sandbox.run(
            self.transform["errCmd"],
            stdin=_stdin(self.transform.get("errStdin")),
            env=env,
            cwd=self._cwd(),
            mounts=mounts,
            timeout=self.timeout,
            cancel=self.cancelled,
        )
        outcome.log.append((attempt, "errCmd: " + res.output.decode(errors="replace")))
        return res.returncode == 0

    def _materialise(self, datum: Datum, scratch: Path) -> Path:
        pfs = scratch / "pfs"
        (pfs / "out").mkdir(parents=True)
        for _, _, leaf in input_leaves(self.spec.get("input") or {}):
            (pfs / leaf["name"]).mkdir(exist_ok=True)
        for i in datum.inputs:
            for f in i.files:
                dest = pfs / i.name / f.path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                if i.empty_files:
                    dest.touch()
                elif self.copy_inputs:
                    shutil.copyfile(self.objects.path(f.hash), dest)
                else:
                    with contextlib.suppress(FileExistsError):
                        os.link(self.objects.path(f.hash), dest)
        return pfs

    def _collect(self, datum: Datum, out: Path) -> list[Entry]:
        """Store the datum's outputs (every process of the datum has ended): regular files
        and directories only, UTF-8 names without control characters. A symlink to an
        input file stores that input file as the commit holds it, as pachd's upload does
        (its content even where the datum saw it empty, under ``emptyFiles``); a symlink
        to another file inside ``/pfs`` stores that file's content."""
        pfs = out.parent
        root = pfs.resolve()
        inputs = {(i.name, f.path): f for i in datum.inputs for f in i.files}
        files = list(_output_files(out))
        by_reference: dict[str, Entry] = {}
        try:
            # links first: a link's target may be another output, which storing moves away
            for local, rel in files:
                if not local.is_symlink():
                    continue
                name, _, path = (
                    _link_target(local, pfs, rel).relative_to(root).as_posix().partition("/")
                )
                linked = inputs.get((name, "/" + path))
                if linked is not None:
                    by_reference[rel] = Entry(rel, linked.hash, linked.size, datum.id)
                else:
                    _own_copy(local, pfs, rel)
            entries = []
            for local, rel in files:
                if rel in by_reference:
                    entries.append(by_reference[rel])
                    continue
                _own_copy(local, pfs, rel)
                digest, size = self.objects.adopt(local)
                entries.append(Entry(rel, digest, size, datum.id))
        except OutputError:
            raise
        except OSError as exc:  # e.g. no space left: name the output, not scratch
            raise OSError(exc.errno, f"cannot store output {rel}: {exc.strerror}") from exc
        return entries


class OutputError(OSError):
    """An output the store refuses: not a regular file or directory, or a bad name."""


def _output_files(root: Path, folder: Path | None = None) -> Iterator[tuple[Path, str]]:
    """The files under ``root`` (each folder's files by name, then its folders), as
    (host path, ``/``-rooted name); anything that is not a file, a folder or a symlink
    fails, naming the path, before anything is read."""
    folder = folder or root
    files, folders = [], []
    for name in sorted(os.listdir(folder)):
        local = folder / name
        rel = _output_name(root, local)
        mode = os.lstat(local).st_mode
        if stat.S_ISDIR(mode):
            folders.append(local)
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            files.append((local, rel))
        else:
            raise OutputError(
                f"output {rel} is a {_kind(mode)}: only regular files and directories "
                "can be committed"
            )
    yield from files
    for sub in folders:
        yield from _output_files(root, sub)


def _output_name(root: Path, local: Path) -> str:
    """``local``'s name under ``/pfs/out``; it must be valid UTF-8 without control
    characters (names are lines in listings and arguments downstream)."""
    rel = "/" + local.relative_to(root).as_posix()
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        shown = ascii(os.fsencode(rel))
        raise OutputError(f"output {shown}: the name is not valid UTF-8") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in rel):
        raise OutputError(f"output {rel!a}: the name holds a control character")
    return rel


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    return next((name for test, name in kinds if test(mode)), f"file of mode {mode:o}")


def _link_target(local: Path, pfs: Path, rel: str) -> Path:
    """The regular file inside ``/pfs`` that the symlink ``local`` leads to (a datum's
    absolute ``/pfs/...`` targets read as the datum saw them)."""
    target = os.readlink(local)
    if target.startswith(PFS_PREFIX):
        target = str(pfs / target[len(PFS_PREFIX) :])
    real = Path(target if os.path.isabs(target) else local.parent / target).resolve()
    if not real.is_relative_to(pfs.resolve()):
        raise OutputError(f"output {rel} links outside /pfs: {os.readlink(local)}")
    if not real.is_file():
        raise OutputError(
            f"output {rel} links to {os.readlink(local)}, which is not a regular file"
        )
    return real


def _own_copy(local: Path, pfs: Path, rel: str) -> None:
    """Make ``local`` a regular file that nothing else shares before it moves into the
    store: a symlink becomes a copy of its target (a regular file inside ``/pfs``, as
    Pachyderm follows links to inputs), a file with other hard links becomes a copy."""
    st = os.lstat(local)
    if stat.S_ISLNK(st.st_mode):
        real = _link_target(local, pfs, rel)
    elif st.st_nlink == 1:
        return
    else:
        real = local
    tmp = local.with_name(f".{local.name}.pachlocal-copy")
    shutil.copyfile(real, tmp)
    os.replace(tmp, local)


PFS_PREFIX = "/pfs/"

RUNTIME_VARIABLES = ("LANG", "LANGUAGE", "TZ", "JAVA_HOME")


def runtime_env(host: Mapping[str, str]) -> dict[str, str]:
    """What stands in for a pipeline image's own environment: ``PATH`` with the engine's
    interpreter first, the locale, ``TZ`` and ``JAVA_HOME`` (the JVM the image would hold)."""
    env = {k: v for k, v in host.items() if k in RUNTIME_VARIABLES or k.startswith("LC_")}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + host.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stdin(lines: Sequence[str] | None) -> bytes | None:
    return ("\n".join(lines) + "\n").encode() if lines else None


def cgroup_name(home: Path) -> str:
    """A state directory's cgroup for datums (one writer per state directory)."""
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    return f"pachlocal-{digest}"

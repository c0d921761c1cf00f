"""Run one command confined: the only way any repository test (and later, model output) runs.

Every run gets:
- a wall-clock timeout; on expiry the whole process group is killed (SIGKILL), and with a PID
  namespace (`unshare -p --fork --kill-child`) every descendant dies with it, even one that
  called setsid();
- rlimits: CPU seconds, address space (envs.memory_mb), largest file (envs.max_file_mb),
  number of processes (envs.max_processes), core dumps 0;
- a scrubbed environment: PATH, HOME (a fresh temporary directory), LANG, TMPDIR (inside HOME)
  and the PYTHON* variables set here, nothing inherited;
- cwd = the temporary tree; stdout+stderr captured and capped at envs.max_output_kb (the
  rest is drained and counted, so a flood can neither block the child nor fill memory);
- no network: a new network namespace (`unshare -rn`, loopback only, down) where the kernel
  allows unprivileged user namespaces. Where it does not, a `sitecustomize` that refuses
  inet sockets is used instead, and `isolation` says so (a weaker, in-process guard);
- paths given as `readonly` (the cached venv and pristine tree) are bind-mounted read-only
  inside a private mount namespace, so a run cannot alter the cache;
- when the run does not drop to another uid (the caller is not root, e.g. a laptop's
  `make test` or a CI runner user; or envs.sandbox_user is null), the run would otherwise write anywhere its user can (the checkout, ~). Inside
  its mount namespace the whole filesystem is then made read-only (`confine_fs.py`) except the
  working tree, the run's HOME/TMPDIR, /dev (with a private /dev/shm), /sys and a fresh /proc
  (the host's /proc would reach the host's mounts through /proc/<pid>/root); the mounts are
  then locked by a nested user+mount namespace (so the run, root inside its namespace, cannot
  remount them read-write), and a write probe outside the tree must fail. If any of that does
  not hold the run fails loudly (exit 97, "hrm sandbox: ..."; pytest never starts, so
  `TestRun.sandbox_error`), never runs unconfined. Without user namespaces and without root
  the filesystem is NOT confined and `isolation` ends in `+unconfined-fs`;
- when the caller is root, the run drops to an unprivileged uid: root ignores RLIMIT_NPROC
  and may write anywhere, so without this a fork bomb or a write outside the tree would not
  be contained. Each run leases its own uid from envs.sandbox_uid_range (group: that of
  envs.sandbox_user): RLIMIT_NPROC counts all processes of a uid on the host (user
  namespaces included), so runs sharing one uid would share one process budget, and one
  run's fork bomb would make every concurrent run fail at its first fork. After the run
  every process of the leased uid is killed before the uid is released.

- with a mount namespace, `hide` paths (the caller's checkout: mlflow.db, params, data) are
  covered by an empty read-only tmpfs, the `readonly` paths below them brought back
  (`confine_fs.py`; the label gains `+project-hidden`);
- with a mount namespace and `max_tree_mb` (envs.max_tree_mb), the tree and HOME are overlays
  whose writes land in one tmpfs of that size: together they stop at the quota (ENOSPC), the
  host disk is never written and the tree on the host stays as it was (the label gains
  `+quota`; `confine_fs.py`);
- `pass_fds` (the report and key pipes, `hrm.envs.report_channel`) stay open in the child.

`isolation` in the result names what was in force: `uid+netns+pidns+rofs` (root),
`netns+pidns+rofs` (not root, namespaces), `sitecustomize-net+unconfined-fs` (neither).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hrm.config import EnvsConfig

_CONFINE_PROGRAM = Path(__file__).with_name("confine_fs.py")
_NET_GUARD_PROGRAM = Path(__file__).with_name("net_guard_sitecustomize.py")
_MOUNT_RO = (
    # The isolation probe only (runs use `confine_fs.py`): $1..$n-1: paths to make read-only,
    # then "--", then the command.
    'while [ "$1" != "--" ]; do mount --bind "$1" "$1" && '
    'mount -o remount,bind,ro "$1" || exit 97; shift; done; shift; exec "$@"'
)


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float
    memory_mb: int
    max_processes: int
    max_file_mb: int
    max_output_kb: int
    sandbox_user: str | None = "nobody"
    """Unprivileged user the run drops to when the caller is root (None: never drop)."""
    uid_range: tuple[int, int] | None = None
    """(first, count): lease a private uid per run from this range when dropping (None: use
    `sandbox_user`'s uid for every run, sharing its RLIMIT_NPROC budget)."""
    max_tree_mb: int | None = None
    """Quota of everything the run writes in its tree and HOME (None: none)."""

    @property
    def cpu_s(self) -> int:
        # CPU time of one process cannot usefully exceed its wall-clock budget.
        return int(self.timeout_s) + 2


def limits_from(cfg: EnvsConfig, timeout_s: float | None = None) -> SandboxLimits:
    """The limits of `envs` (`timeout_s` overrides `envs.timeout_s` for one run)."""
    return SandboxLimits(
        timeout_s=float(timeout_s if timeout_s is not None else cfg.timeout_s),
        memory_mb=cfg.memory_mb,
        max_processes=cfg.max_processes,
        max_file_mb=cfg.max_file_mb,
        max_output_kb=cfg.max_output_kb,
        sandbox_user=cfg.sandbox_user,
        uid_range=tuple(cfg.sandbox_uid_range) if cfg.sandbox_uid_range else None,
        max_tree_mb=cfg.max_tree_mb,
    )


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int | None
    """Exit status; None when killed by a signal (see `signal_name`)."""
    signal_name: str
    timed_out: bool
    output: str
    output_truncated: bool
    output_bytes: int
    duration_s: float
    isolation: str

    @property
    def killed_reason(self) -> str:
        if self.timed_out:
            return "wall-clock timeout: process group killed"
        return {
            "SIGXCPU": "CPU-time limit exceeded",
            "SIGXFSZ": "file-size limit exceeded",
            "SIGKILL": "killed (memory or process limit, or the kernel)",
            "SIGSEGV": "crashed (SIGSEGV; possibly the address-space limit)",
        }.get(self.signal_name, self.signal_name)


@dataclass(frozen=True)
class Isolation:
    """What the host supports; probed once per process."""

    uid: int | None
    gid: int | None
    unshare: list[str]
    """Prefix command (empty: none available)."""
    label: str
    confine_fs: bool = False
    """Namespaces work: each run makes the filesystem read-only outside its tree and HOME
    (`confine_fs.py --all-readonly`), whether or not it also drops to another uid (a leased
    uid could still write world-writable directories such as /tmp)."""

    @property
    def fs_confined(self) -> bool:
        """Whether writes outside the tree are refused (by the uid drop or `confine_fs.py`)."""
        return self.label.startswith("uid+") or self.confine_fs


def sandbox_identity(limits: SandboxLimits) -> tuple[int, int] | None:
    """(uid, gid) a run drops to, or None when the caller is not root or dropping is off."""
    if os.geteuid() != 0 or not limits.sandbox_user:
        return None
    try:
        entry = pwd.getpwnam(limits.sandbox_user)
    except KeyError:
        raise RuntimeError(
            f"envs.sandbox_user {limits.sandbox_user!r} does not exist on this host"
        ) from None
    return entry.pw_uid, entry.pw_gid


_LEASE_DIR = Path(tempfile.gettempdir()) / "hrm-sandbox-uids"


def _uids_in_use() -> set[int]:
    """uids owning a process on this host (the owner of /proc/<pid> is its effective uid)."""
    out = set()
    with os.scandir("/proc") as it:
        for entry in it:
            if entry.name.isdigit():
                try:
                    out.add(entry.stat().st_uid)
                except OSError:
                    pass
    return out


def _kill_uid(uid: int, gid: int) -> None:
    """SIGKILL every process of `uid` (kill(-1) as that uid), then wait briefly until gone."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["kill", "-KILL", "-1"], user=uid, group=gid, extra_groups=[],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    deadline = time.monotonic() + 3
    while uid in _uids_in_use() and time.monotonic() < deadline:
        time.sleep(0.02)


@contextlib.contextmanager
def lease_identity(limits: SandboxLimits):
    """Yield the (uid, gid) one run uses, or None when not dropping from root.

    With `uid_range`, the uid is this run's alone (an flock under /tmp/hrm-sandbox-uids
    makes it exclusive across processes; uids with a passwd entry or a live process are
    skipped) and every process it still owns is killed before release.
    """
    base = sandbox_identity(limits)
    if base is None or limits.uid_range is None:
        yield base
        return
    first, count = limits.uid_range
    _LEASE_DIR.mkdir(mode=0o700, exist_ok=True)
    busy = _uids_in_use()
    start = os.getpid() % count
    for i in range(count):
        uid = first + (start + i) % count
        if uid in busy:
            continue
        try:
            pwd.getpwuid(uid)
            continue  # a real account: never borrow it
        except KeyError:
            pass
        fh = (_LEASE_DIR / f"{uid}.lock").open("w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        try:
            if uid in _uids_in_use():  # a run that released it is still dying
                continue
            try:
                yield uid, base[1]
            finally:
                _kill_uid(uid, base[1])
            return
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
    raise RuntimeError(f"no free sandbox uid in envs.sandbox_uid_range {limits.uid_range}")


def isolation_for(limits: SandboxLimits) -> Isolation:
    """The isolation runs under these limits get (probed once per process and identity)."""
    base = sandbox_identity(limits)
    if base is None or limits.uid_range is None:
        return probe_isolation(*(base or (None, None)))
    return _probe_leased(limits.sandbox_user, limits.uid_range, base)


@lru_cache(maxsize=4)
def _probe_leased(user, uid_range, base) -> Isolation:
    lim = SandboxLimits(timeout_s=10, memory_mb=1024, max_processes=64, max_file_mb=1,
                        max_output_kb=1, sandbox_user=user, uid_range=uid_range)
    with lease_identity(lim) as ident:
        iso = probe_isolation.__wrapped__(*ident)
    # Report the pool, not the one uid the probe happened to lease.
    return Isolation(None, base[1], iso.unshare, iso.label, iso.confine_fs)


@lru_cache(maxsize=4)
def probe_isolation(uid: int | None, gid: int | None) -> Isolation:
    """Find the strongest namespace set that works here for this identity."""
    candidates = [
        (["unshare", "-rnmp", "--fork", "--kill-child", "--propagation", "private"],
         "netns+pidns+ro"),
        (["unshare", "-rn"], "netns"),
    ]
    probe_dir = tempfile.mkdtemp(prefix="hrm-probe-")
    os.chmod(probe_dir, 0o755)
    try:
        return _probe(candidates, probe_dir, uid, gid)
    finally:
        os.rmdir(probe_dir)


def _probe(candidates, probe_dir: str, uid: int | None, gid: int | None) -> Isolation:
    if shutil.which("unshare"):
        for prefix, label in candidates:
            cmd = prefix + (["sh", "-c", _MOUNT_RO, "sh", probe_dir, "--", "true"]
                            if "pidns" in label else ["true"])
            try:
                ok = subprocess.run(
                    cmd, capture_output=True, timeout=10, user=uid, group=gid,
                    extra_groups=[] if uid is not None else None,
                ).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            if ok:
                if uid is not None:  # the leased uid could still write world-writable dirs
                    if "pidns" in label:
                        return Isolation(uid, gid, prefix, "uid+netns+pidns+rofs", confine_fs=True)
                    return Isolation(uid, gid, prefix, "uid+" + label)
                if "pidns" in label:  # no uid to drop to: confine the filesystem instead
                    return Isolation(None, None, prefix, "netns+pidns+rofs", confine_fs=True)
                return Isolation(None, None, prefix, label + "+unconfined-fs")
    if uid is not None:
        return Isolation(uid, gid, [], "uid+sitecustomize-net")
    return Isolation(None, None, [], "sitecustomize-net+unconfined-fs")


def userns_refused(uid: int | None = None, gid: int | None = None) -> str:
    """Why unprivileged user namespaces cannot be created here (as uid), or "" when they can.

    E.g. Ubuntu 24.04 (and GitHub's ubuntu-24.04 runners) set
    `kernel.apparmor_restrict_unprivileged_userns=1`; `sudo sysctl -w
    kernel.apparmor_restrict_unprivileged_userns=0` lifts it.
    """
    if not shutil.which("unshare"):
        return "no `unshare` binary (util-linux) on PATH"
    try:
        proc = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True,
                              timeout=10, user=uid, group=gid,
                              extra_groups=[] if uid is not None else None)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`unshare -rn true` could not run: {exc}"
    if proc.returncode == 0:
        return ""
    why = f"`unshare -rn true` failed: {proc.stderr.strip() or proc.returncode}"
    for knob, refusing in (("kernel/apparmor_restrict_unprivileged_userns", "1"),
                           ("kernel/unprivileged_userns_clone", "0"),
                           ("user/max_user_namespaces", "0")):
        with contextlib.suppress(OSError):
            value = Path("/proc/sys", knob).read_text().strip()
            if value == refusing:
                why += f"; {knob.replace('/', '.')}={value}"
    return why


def _limit_resources(limits: SandboxLimits):
    def apply() -> None:
        mb = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * mb,) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class _CappedReader(threading.Thread):
    """Drain a pipe to EOF, keeping the first `cap` bytes and counting the rest."""

    def __init__(self, stream, cap: int):
        super().__init__(daemon=True)
        self.stream, self.cap = stream, cap
        self.kept = bytearray()
        self.total = 0

    def run(self) -> None:
        while chunk := self.stream.read(65536):
            self.total += len(chunk)
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]


def chown_tree(path: Path, uid: int, gid: int) -> None:
    """Give a scratch tree to the sandbox user (only used when dropping from root)."""
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _wait_exit(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for `proc` to exit within `timeout_s`; False on timeout. A pidfd wakes us the
    moment it exits (`Popen.wait(timeout)` polls, sleeping up to 50 ms between checks)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel or platform): poll
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [], timeout_s)
        finally:
            os.close(fd)
    try:
        proc.wait(timeout=0 if fd is not None else timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def run_sandboxed(
    argv: list[str],
    *,
    cwd: Path,
    home: Path,
    limits: SandboxLimits,
    path_dirs: list[str],
    python_env: dict[str, str],
    readonly: list[Path],
    hide: list[Path] = (),
    pass_fds: tuple[int, ...] = (),
) -> SandboxResult:
    """Run `argv` in `cwd` under the limits; `home` is a fresh scratch directory.

    `python_env` may only hold PYTHON* variables; `readonly` paths are mounted read-only
    where a mount namespace is available; `hide` paths (the project's checkout) are covered by
    an empty tmpfs there, except the `readonly` paths below them (`hidden_paths` says which
    can be); `pass_fds` stay open in the child (the report and key pipes of a test run).
    Never raises for anything the child does.
    """
    bad = [k for k in python_env if not k.startswith("PYTHON")]
    if bad:
        raise ValueError(f"only PYTHON* variables may be passed into the sandbox, got {bad}")
    iso = isolation_for(limits)
    with lease_identity(limits) as ident:
        return _run(argv, cwd=cwd, home=home, limits=limits, path_dirs=path_dirs,
                    python_env=python_env, readonly=readonly, ident=ident, iso=iso,
                    hide=hide, pass_fds=pass_fds)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def hidden_paths(hide, *, cwd: Path, home: Path, argv0: str, readonly) -> list[Path]:
    """The `hide` paths a run can have hidden: not holding its tree or HOME, and not holding its
    interpreter unless that is under a `readonly` path (which comes back inside the tmpfs)."""
    exe = Path(shutil.which(argv0) or argv0).resolve()
    ro = [Path(r).resolve() for r in readonly]
    out = []
    for h in map(lambda p: Path(p).resolve(), hide):
        if _under(cwd.resolve(), h) or _under(home.resolve(), h):
            continue
        if _under(exe, h) and not any(_under(exe, r) for r in ro):
            continue
        out.append(h)
    return out


def _run(argv, *, cwd, home, limits, path_dirs, python_env, readonly, ident, iso, hide=(),
         pass_fds=()) -> SandboxResult:
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.pathsep.join([*path_dirs, "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
        **python_env,
    }
    if "sitecustomize-net" in iso.label:
        guard_dir = home / "netguard"
        guard_dir.mkdir(exist_ok=True)
        shutil.copy2(_NET_GUARD_PROGRAM, guard_dir / "sitecustomize.py")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(guard_dir), env.get("PYTHONPATH", "")) if p
        )
    cmd = list(argv)
    label = iso.label
    if "pidns" in iso.label:
        # The mount setup runs as the run's own user (a leased uid when root): a copy in HOME
        # and the command's interpreter when that is Python (it must reach both), else ours.
        helper = home / "confine_fs.py"
        shutil.copy2(_CONFINE_PROGRAM, helper)
        python = argv[0] if Path(argv[0]).name.startswith("python") else sys.executable
        hidden = hidden_paths(hide, cwd=cwd, home=home, argv0=argv[0], readonly=readonly)
        cmd = iso.unshare + [python, "-I", "-S", str(helper),
                             *(["--all-readonly"] if iso.confine_fs else []), str(cwd), str(home),
                             *[a for r in readonly for a in ("--readonly", str(r))],
                             *[a for h in hidden for a in ("--hide", str(h))],
                             *(["--quota-mb", str(limits.max_tree_mb)] if limits.max_tree_mb else []),
                             "--", *cmd]
        if limits.max_tree_mb:
            label += "+quota"
        if hidden:
            label += "+project-hidden"
    elif iso.unshare:
        cmd = iso.unshare + cmd
    if ident is not None:
        chown_tree(home, *ident)
        chown_tree(cwd, *ident)
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_limit_resources(limits),
        pass_fds=tuple(pass_fds),
        user=ident[0] if ident else None, group=ident[1] if ident else None,
        extra_groups=[] if ident else None,
    )
    reader = _CappedReader(proc.stdout, limits.max_output_kb * 1024)
    reader.start()
    timed_out = not _wait_exit(proc, limits.timeout_s)
    # Kill the group either way: a background child must not outlive the run.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    reader.join(timeout=5)
    proc.stdout.close()
    duration = time.monotonic() - start
    code = proc.returncode
    sig = ""
    if code is not None and code < 0:
        sig = signal.Signals(-code).name
        code = None
    if timed_out:
        code = None
    return SandboxResult(
        exit_code=code,
        signal_name=sig,
        timed_out=timed_out,
        output=reader.kept.decode("utf-8", errors="replace"),
        output_truncated=reader.total > len(reader.kept),
        output_bytes=reader.total,
        duration_s=round(duration, 3),
        isolation=label,
    )

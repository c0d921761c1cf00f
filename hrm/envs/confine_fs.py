"""The sandbox's mount-namespace setup: a program, run before the command, never imported.

Run by `hrm.envs.sandbox` as

    unshare -rnmp ... python -I -S confine_fs.py [--all-readonly] TREE HOME
        [--readonly PATH]... [--hide PATH]... [--quota-mb N] -- CMD...

(root in a new user, mount, PID and network namespace; propagation private). It

- bind-mounts every `--readonly` path (the cached environment) read-only;
- hides every `--hide` path (the project's checkout: mlflow.db, params, data, other instances)
  under an empty read-only tmpfs, bringing back only the `--readonly` paths below it, so the
  code under test can read neither the project's files nor the tracking database;
- with `--all-readonly` (the caller is not root, so there is no other uid to drop to): makes
  every other mount read-only except TREE, HOME, /dev, /sys and a fresh /proc (the host's
  /proc would reach the host's writable mounts through /proc/<pid>/root), with a private tmpfs
  on /dev/shm, and checks with write probes that nothing outside TREE and HOME is writable;
- with `--quota-mb N`: makes TREE and HOME overlays whose writes land in one tmpfs of N MiB,
  so everything the run writes there together stops at N MiB (ENOSPC), the host's disk is
  never written, and the tree on the host is left as it was (its files read through);
- locks the mounts (a nested user+mount namespace), so the run, root in its namespace, can
  neither remount them read-write nor unmount the tmpfs that hides the project;
- re-enters its working directory by path (the cwd still points at the mount from before the
  tree's bind) and execs CMD.

Any step that fails ends the run before CMD starts: exit 97 with `hrm sandbox: cannot confine
the filesystem: <why>` (docs/envs.md). It imports only the standard library: it runs under the
environment's interpreter with `-I -S`.
"""

import ctypes
import errno
import os
import re
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOSYMFOLLOW, MS_BIND, MS_REC = 32, 256, 4096, 16384
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
KEEP = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
        "nosymfollow": MS_NOSYMFOLLOW}
EXIT_CANNOT_CONFINE = 97
libc = ctypes.CDLL(None, use_errno=True)


def die(msg):
    sys.stderr.write("hrm sandbox: cannot confine the filesystem: " + msg + "\n")
    sys.stderr.flush()
    os._exit(EXIT_CANNOT_CONFINE)


def mount(src, tgt, fstype, flags, data=None):
    def enc(v):
        return None if v is None else os.fsencode(v)

    if libc.mount(enc(src), enc(tgt), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), tgt)


def umount(tgt):
    if libc.umount2(os.fsencode(tgt), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), tgt)


def mounts():
    """(mount point, per-mount options) from mountinfo; "\\040"-style octal escapes decoded."""
    out = []
    with open("/proc/self/mountinfo", "rb") as fh:
        for line in fh:
            f = line.split()
            path = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), f[4])
            out.append((os.fsdecode(path), f[5].decode().split(",")))
    return out


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def parse(args):
    sep = args.index("--")
    opts, cmd = args[:sep], args[sep + 1:]
    all_readonly = "--all-readonly" in opts
    opts = [a for a in opts if a != "--all-readonly"]
    tree, home = (os.path.realpath(a) for a in opts[:2])
    readonly, hide, quota = [], [], []
    rest = opts[2:]
    for flag, value in zip(rest[::2], rest[1::2], strict=True):
        if flag == "--quota-mb":
            quota.append(int(value))
        else:
            {"--readonly": readonly, "--hide": hide}[flag].append(os.path.realpath(value))
    return all_readonly, tree, home, readonly, hide, (quota[-1] if quota else None), cmd


def kept_flags(opts):
    """The locked flags (nosuid, nodev, ...) a remount of a mount with options `opts` must keep;
    atime is kept by the kernel."""
    return sum(bit for name, bit in KEEP.items() if name in opts)


def remount_readonly(path):
    """Make the mount at `path` read-only, keeping its locked flags."""
    opts = [o for p, o in mounts() if p == path]
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(opts[-1] if opts else []))


def mount_quota(writable, quota_mb):
    """Each writable directory becomes an overlay (its files read through, unchanged on the
    host) whose writes go to ONE tmpfs of `quota_mb` MiB, mounted under the last of them (HOME:
    the overlay over HOME hides the mount point's contents but keeps using it)."""
    for path in writable:
        if any(c in path for c in ",:" + chr(92)):
            die(f"{path}: an overlay cannot name a directory holding ',', ':' or a backslash")
    store = os.path.join(writable[-1], ".hrm-quota")
    os.makedirs(store, exist_ok=True)
    mount("tmpfs", store, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0700,size={quota_mb}m")
    for k, path in enumerate(writable):
        upper, work = os.path.join(store, f"upper{k}"), os.path.join(store, f"work{k}")
        os.mkdir(upper)
        os.mkdir(work)
        os.chmod(upper, os.stat(path).st_mode & 0o7777)  # the overlay's top directory is upper's
        mount("overlay", path, "overlay", MS_NOSUID | MS_NODEV,
              f"lowerdir={path},upperdir={upper},workdir={work}")


def hide_paths(hide, readonly, writable):
    """An empty read-only tmpfs over each hidden path; the read-only paths below it come back."""
    for path in hide:
        if any(under(w, [path]) for w in writable):
            die(f"cannot hide {path}: the tree or HOME lies inside it")
        if not os.access(path, os.R_OK | os.X_OK):
            continue  # already out of the run's reach (e.g. a 0700 directory of another user)
        keep = [r for r in readonly if under(r, [path]) and r != path]
        fds = [os.open(r, os.O_PATH | os.O_DIRECTORY) for r in keep]
        try:
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
            for r, fd in zip(keep, fds, strict=True):
                os.makedirs(r, exist_ok=True)
                mount(f"/proc/self/fd/{fd}", r, None, MS_BIND | MS_REC)
                remount_readonly(r)
            mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        finally:
            for fd in fds:
                os.close(fd)


def make_all_readonly(exempt):
    """Remount every mount outside `exempt` read-only; returns them (mount point -> options)."""
    todo = {}
    for path, opts in mounts():
        if not under(path, exempt):
            todo[path] = opts  # the last entry of a path is the mount on top
    for path, opts in todo.items():
        if "ro" in opts:
            continue
        try:
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(opts))
        except OSError:
            pass  # judged by check_readonly: only a mount the run cannot reach may stay writable
    return todo


def check_readonly(todo, tree, home, stage):
    for path in todo:
        try:
            if not os.statvfs(path).f_flag & os.ST_RDONLY:
                die(f"{path} is still writable ({stage})")
        except (PermissionError, FileNotFoundError, NotADirectoryError):
            pass  # not reachable by the run either
    for probe_dir in {os.path.dirname(tree), os.path.dirname(home)}:
        probe = os.path.join(probe_dir, f".hrm-rofs-probe-{os.getpid()}")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                continue
            die(f"write probe {probe}: {exc.strerror} ({stage})")
        os.unlink(probe)
        die(f"a write to {probe_dir} outside the tree succeeded ({stage})")


def check_hidden(hide, readonly):
    for path in hide:
        try:
            names = set(os.listdir(path))
        except PermissionError:
            continue  # out of reach: as hidden as an empty tmpfs
        except OSError as exc:
            die(f"hidden path {path}: {exc.strerror}")
        allowed = {os.path.relpath(r, path).split(os.sep)[0] for r in readonly
                   if under(r, [path]) and r != path}
        if names - allowed:
            die(f"{path} still shows {sorted(names - allowed)[:3]}")


def lock_mounts():
    """A mount namespace owned by a nested (less privileged) user namespace gets every mount
    locked: the run, root in its namespace, can neither remount nor unmount them."""
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        die("nested unshare: " + os.strerror(ctypes.get_errno()))
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
    except OSError as exc:
        die(f"nested user namespace map: {exc}")


def main(args):
    all_readonly, tree, home, readonly, hide, quota_mb, cmd = parse(args)
    writable = [tree, home]
    try:
        # Separate mounts: remounting their parent spares them.
        for path in readonly:
            mount(path, path, None, MS_BIND | MS_REC)
            remount_readonly(path)
        if quota_mb is not None:
            mount_quota(writable, quota_mb)
        else:
            for path in writable:
                mount(path, path, None, MS_BIND | MS_REC)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if all_readonly and os.path.isdir("/dev/shm"):
            mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        hide_paths(hide, readonly, writable)
    except OSError as exc:
        die(f"mount {exc.filename}: {exc.strerror}")
    todo = {}
    if all_readonly:
        todo = make_all_readonly(writable + ["/dev", "/proc", "/sys"])
        check_readonly(todo, tree, home, "after remount")
    check_hidden(hide, readonly)
    lock_mounts()
    for path in hide:
        try:
            umount(path)
            die(f"{path} could be unmounted after locking")
        except OSError:
            pass
    if all_readonly:
        target = max((p for p in todo if under(os.path.dirname(tree), [p])), key=len,
                     default="/")
        try:
            mount(None, target, None, MS_REMOUNT | MS_BIND | kept_flags(todo.get(target, [])))
            die(f"{target} could be remounted read-write after locking")
        except OSError:
            pass
        check_readonly(todo, tree, home, "after locking")
    check_hidden(hide, readonly)
    os.chdir(os.getcwd())
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        die(f"exec {cmd[0]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])

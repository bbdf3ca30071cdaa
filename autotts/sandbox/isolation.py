"""Operating-system isolation of a sandbox worker (Linux).

A worker process isolates itself in two steps, both before any untrusted code is loaded:

1. :func:`enter_namespaces` (in the worker, before it forks the process that will run the
   candidate): new mount, network, PID, IPC and UTS namespaces, plus a user namespace when
   the worker is not root. The forked child is PID 1 of the new PID namespace, so every
   process it could ever create dies with it; its network namespace has no interface up.
2. :func:`lock_down` (in that child): die with the worker (``PR_SET_PDEATHSIG``); drop to
   the unprivileged uid/gid 65534 when running as root (no capabilities left otherwise);
   resource limits (address space, CPU time, file size 0, open files, processes 0, core
   dumps 0); no-new-privileges and not dumpable; every inherited descriptor but stdin,
   stdout, stderr and ``keep_fd`` closed; a Landlock ruleset that grants *no* file-system
   access at all (no read, no write, no directory listing: every module the candidate may
   use is imported before), no TCP bind/connect (Landlock ABI ≥ 4) and no abstract Unix
   sockets or signals outside the sandbox (ABI ≥ 6); and a seccomp filter (libseccomp through
   ``pyseccomp``) that lets through only the few system calls a running controller needs
   (:data:`ALLOWED_SYSCALLS`: reading and writing the descriptors it holds, non-executable
   memory, its own signal mask, exiting) and refuses every other one with ``EPERM``.

Every step either succeeds or raises :class:`IsolationError` naming what is missing: nothing
degrades silently (``autotts.sandbox.isolation_problems`` runs both in a probe worker to tell
what this machine lacks).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform  # (used after the file system closes: imported before)
import resource
import signal
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1

NOBODY = 65534

# The only system calls the process running the candidate may make (every other one fails with
# EPERM, so a call nobody thought of, or one a newer kernel adds, is refused too): reading its
# stdin and writing its stdout/stderr (descriptors it already holds), memory (never
# executable: no machine code of the candidate's own, such as rdtsc or rdrand), its own
# signal mask, constant facts about itself (its pid is 1 in its PID namespace), and exiting.
# Refused among what CPython or libc might try: every clock, timer and sleep, randomness,
# processes, exec, sockets, signals to anyone, file access and file metadata (a pipe's
# timestamps are a clock; descriptor numbers, inodes and the working directory's name differ
# between runs), new descriptors, non-blocking or peeking reads (how fast the parent reads is
# a clock), IPC objects (stamped with the time), prctl/arch_prctl, ioctl and the rest.
ALLOWED_SYSCALLS = (
    "read", "readv", "write", "writev", "close", "lseek",
    "brk", "munmap", "mremap",
    "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "uname",
    "exit", "exit_group",
)  # fmt: skip
# Allowed with only some arguments (see _load_seccomp_filter): mmap and mprotect without
# PROT_EXEC; fcntl's F_GETFD and F_GETFL; prlimit64 that only reads a limit (no new one);
# futex waits and wakes (what locks use) on the process's own memory only (FUTEX_PRIVATE_FLAG:
# a shared futex on a page of a mapped file, such as libc's code, reaches every process on the
# machine that maps it) and never with a deadline on the wall clock (FUTEX_CLOCK_REALTIME with
# a timeout: whether the wait returns at once would depend on the date; glibc sets the flag on
# untimed waits too); madvise with the advice allocators give (not, say, MADV_COLLAPSE, whose
# outcome depends on the machine's memory).
F_GETFD, F_GETFL = 1, 3
FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10
FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME, FUTEX_OP_BITS = 0x80, 0x100, 0x1FF
MADVICE = (0, 1, 2, 3, 4, 8, 14, 15)  # NORMAL RANDOM SEQUENTIAL WILLNEED DONTNEED FREE (NO)HUGEPAGE


AT_SYSINFO_EHDR = 33
PROT_EXEC = 4
PR_SET_TSC, PR_TSC_SIGSEGV = 26, 2
# x86-64 vDSO entry points and the system calls they stand for
VDSO_SYSCALLS = {
    "__vdso_clock_gettime": 228, "__vdso_gettimeofday": 96, "__vdso_time": 201,
    "__vdso_clock_getres": 229, "__vdso_getcpu": 309, "__vdso_getrandom": 318,
}  # fmt: skip


class IsolationError(RuntimeError):
    """A kernel mechanism the sandbox relies on is unavailable or failed."""


_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _check(result: int, what: str) -> int:
    if result == -1:
        code = ctypes.get_errno()
        raise IsolationError(f"{what} failed: {os.strerror(code)} (errno {code})")
    return result


def enter_namespaces() -> None:
    """Move this process into new mount, network, IPC, UTS and (for its children) PID
    namespaces; as a non-root user, inside a new user namespace that maps only its own uid."""
    if not sys.platform.startswith("linux"):
        raise IsolationError(f"namespaces need Linux (this is {sys.platform})")
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if uid != 0:
        flags |= CLONE_NEWUSER
    if _c().unshare(flags) == -1:
        code = ctypes.get_errno()
        hint = (
            "unprivileged user namespaces are disabled here (sysctl "
            "kernel.unprivileged_userns_clone=1, or on Ubuntu "
            "kernel.apparmor_restrict_unprivileged_userns=0; in a container, allow the "
            "unshare/clone syscalls)"
            if uid != 0
            else "the container forbids creating namespaces (allow unshare, e.g. run it privileged)"
        )
        raise IsolationError(f"unshare(namespaces) failed: {os.strerror(code)}: {hint}")
    if uid != 0:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0 when Landlock is unavailable)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _c().syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION
    )
    return max(0, version)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def _restrict_with_landlock() -> None:
    """Handle every access right the kernel knows and grant none: no file-system access
    (and, where the ABI has them, no TCP and no abstract sockets or signals outside)."""
    abi = landlock_abi()
    if abi < 1:
        raise IsolationError(
            "Landlock is unavailable (Linux ≥ 5.13 with 'landlock' in the LSM list is needed)"
        )
    fs = (1 << 13) - 1
    if abi >= 2:
        fs |= 1 << 13  # REFER
    if abi >= 3:
        fs |= 1 << 14  # TRUNCATE
    if abi >= 5:
        fs |= 1 << 15  # IOCTL_DEV
    attr = _RulesetAttr(fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    libc = _c()
    fd = _check(
        libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        _check(libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, fd, 0), "landlock_restrict_self")
    finally:
        os.close(fd)


def _seccomp_module():
    try:
        import pyseccomp
    except Exception as exc:  # the package, or libseccomp itself, is missing
        raise IsolationError(
            f"seccomp is unavailable: {exc} (install libseccomp2 and the pyseccomp package)"
        ) from None
    return pyseccomp


def _load_seccomp_filter(pyseccomp) -> None:
    """Every system call but :data:`ALLOWED_SYSCALLS` (and the argument-checked few) fails
    with EPERM from here on; clone3 with ENOSYS, so that libc falls back to the refused
    clone instead of retrying."""
    flt = pyseccomp.SyscallFilter(pyseccomp.ERRNO(errno.EPERM))
    allow = pyseccomp.ALLOW
    for name in ALLOWED_SYSCALLS:
        try:
            flt.add_rule(allow, name)
        except Exception:  # not a syscall of this architecture
            continue
    with contextlib.suppress(Exception):  # clone3 is unknown to older libseccomp
        flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for name in ("mmap", "mprotect"):
        flt.add_rule(allow, name, pyseccomp.Arg(2, pyseccomp.MASKED_EQ, PROT_EXEC, 0))
    for command in (F_GETFD, F_GETFL):
        flt.add_rule(allow, "fcntl", pyseccomp.Arg(1, pyseccomp.EQ, command))
    flt.add_rule(allow, "prlimit64", pyseccomp.Arg(2, pyseccomp.EQ, 0))
    futex_op = functools.partial(pyseccomp.Arg, 1, pyseccomp.MASKED_EQ, FUTEX_OP_BITS)
    for command in (FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET):
        flt.add_rule(allow, "futex", futex_op(command | FUTEX_PRIVATE_FLAG))
    for command in (FUTEX_WAIT, FUTEX_WAIT_BITSET):  # on the wall clock: with no deadline
        dated = futex_op(command | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
        flt.add_rule(allow, "futex", dated, pyseccomp.Arg(3, pyseccomp.EQ, 0))
    for advice in MADVICE:
        flt.add_rule(allow, "madvise", pyseccomp.Arg(2, pyseccomp.EQ, advice))
    try:
        flt.load()
    except OSError as exc:
        raise IsolationError(f"loading the seccomp filter failed: {exc}") from None


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_privileges() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # leaving uid 0 clears every capability
        if os.getuid() != NOBODY:
            raise IsolationError("could not drop to the unprivileged uid 65534")
        return
    # a user namespace gave this process capabilities over its own namespaces: drop them
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_c().capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def _vdso_symbols(base: int) -> dict[str, int]:
    """The addresses of the vDSO's dynamic symbols (an ELF64 image mapped at ``base``)."""
    at = ctypes.string_at
    phoff = struct.unpack_from("<Q", at(base, 64), 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", at(base, 64), 54)
    load = dynamic = None
    for k in range(phnum):
        kind, _, _, vaddr, _, _, memsz, _ = struct.unpack(
            "<IIQQQQQQ", at(base + phoff + k * phentsize, 56)
        )
        if kind == 1 and load is None:
            load, size = vaddr, memsz
        elif kind == 2:
            dynamic = (vaddr, memsz)
    if load is None or dynamic is None:
        raise IsolationError("the vDSO has no loadable segment or no dynamic section")
    bias, tags = base - load, {}
    for offset in range(0, dynamic[1], 16):
        tag, value = struct.unpack("<qQ", at(bias + dynamic[0] + offset, 16))
        if tag == 0:
            break
        tags[tag] = value
    symtab, strtab = bias + tags[6], bias + tags[5]
    count = struct.unpack("<I", at(bias + tags[4] + 4, 4))[0]  # DT_HASH's nchain
    symbols = {"": base + size}  # where the image ends
    for k in range(count):
        name, _, _, _, value, _ = struct.unpack("<IBBHQQ", at(symtab + 24 * k, 24))
        if value:
            symbols[ctypes.string_at(strtab + name).decode()] = bias + value
    return symbols


def clock_pages() -> list[tuple[int, int]]:
    """The address ranges of the kernel's clock data pages (``[vvar…]`` in
    ``/proc/self/maps``; read while files can still be read)."""
    with open("/proc/self/maps") as handle:
        lines = [line.split() for line in handle if "[vvar" in line]
    return [tuple(int(x, 16) for x in fields[0].split("-")) for fields in lines]


def _route_vdso_to_syscalls(pages: list[tuple[int, int]]) -> None:
    """Make the vDSO's clock, CPU-number and random functions real system calls, which the
    seccomp filter then refuses, and unmap the kernel's clock data pages, which are otherwise
    readable with no system call at all. Also make ``rdtsc`` fault (``PR_SET_TSC``). x86-64
    only; elsewhere the vDSO stays (docs/guides/sandbox.md's threat model says so)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    libc = _c()
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    _check(libc.prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0), "prctl(PR_SET_TSC)")
    base = libc.getauxval(AT_SYSINFO_EHDR)
    if not base:
        return  # no vDSO mapped: every clock read is a system call already
    try:
        symbols = _vdso_symbols(base)
    except (KeyError, ValueError, OSError) as exc:
        raise IsolationError(f"cannot read the vDSO's symbols: {exc}") from None
    targets = {symbols[name]: number for name, number in VDSO_SYSCALLS.items() if name in symbols}
    if not targets:
        raise IsolationError("the vDSO exports none of the clock functions it should")
    page = os.sysconf("SC_PAGE_SIZE")
    size = (symbols[""] - base + page - 1) & ~(page - 1)  # the whole mapping: it cannot split
    _check(libc.mprotect(base, size, 7), "mprotect(vDSO, writable)")
    for address, number in targets.items():  # mov eax, number; syscall; ret
        ctypes.memmove(address, b"\xb8" + number.to_bytes(4, "little") + b"\x0f\x05\xc3", 8)
    _check(libc.mprotect(base, size, 5), "mprotect(vDSO, read-execute)")
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    for low, high in pages:  # nothing reads them now: the vDSO makes system calls
        _check(libc.munmap(low, high - low), "munmap(vvar)")


def set_limits(memory_mb: int, cpu_s: float, open_files: int = 32) -> None:
    """Kernel-enforced limits of the calling process (CPU time in seconds: at the limit the
    kernel kills the process, whatever the machine's load)."""
    cpu = max(1, int(cpu_s + 0.999))
    memory = memory_mb * 1024 * 1024
    for limit, value in (
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_CPU, (cpu, cpu)),  # SIGKILL at the limit: no SIGXCPU to time by
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, (open_files, open_files)),
        (resource.RLIMIT_NPROC, (0, 0)),
        (resource.RLIMIT_MEMLOCK, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),
    ):
        resource.setrlimit(limit, value)


def lock_down(memory_mb: int, cpu_s: float, keep_fd: int) -> None:
    """Confine the calling process for good (see the module docstring). Call it in the
    child that will run untrusted code, after everything that needs files is imported."""
    libc = _c()
    pyseccomp = _seccomp_module()  # imported while files can still be read
    pages = clock_pages()
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    _drop_privileges()
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 1 << 16)
    set_limits(memory_mb, cpu_s)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")
    _restrict_with_landlock()
    _route_vdso_to_syscalls(pages)
    _load_seccomp_filter(pyseccomp)

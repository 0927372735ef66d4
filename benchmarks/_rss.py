"""Resident memory of the current process, for the speed benchmark's child scripts."""


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024

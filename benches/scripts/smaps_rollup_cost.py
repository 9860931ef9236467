#!/usr/bin/env python3
"""What reading /proc/PID/stat, status and smaps_rollup costs as a process
grows: map N one-page regions (alternating protections, so the kernel cannot
merge them), then time repeated reads of each file of this very process.

Run: python3 benches/scripts/smaps_rollup_cost.py 0 1000 10000
"""
import mmap
import os
import sys
import time


def cost(pid, name, rounds):
    fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
    started = time.perf_counter()
    for _ in range(rounds):
        os.lseek(fd, 0, os.SEEK_SET)
        os.read(fd, 1 << 16)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return elapsed / rounds * 1e6


def main():
    regions = []
    pid = os.getpid()
    for target in sorted(int(a) for a in sys.argv[1:] or ["0", "1000", "10000"]):
        while len(regions) < target:
            writable = mmap.PROT_WRITE if len(regions) % 2 else 0
            regions.append(mmap.mmap(-1, 4096, prot=mmap.PROT_READ | writable))
        with open(f"/proc/{pid}/maps") as maps:
            mappings = sum(1 for _ in maps)
        print(
            f"mappings={mappings:>6}  stat={cost(pid, 'stat', 200):7.1f} us"
            f"  status={cost(pid, 'status', 200):7.1f} us"
            f"  smaps_rollup={cost(pid, 'smaps_rollup', 50):8.1f} us"
        )


if __name__ == "__main__":
    main()

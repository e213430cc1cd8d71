"""Allocate memory until the kernel kills the process (a job that runs out of memory)."""

import os
import time

CHUNK = 64 * 1024**2
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def main() -> None:
    chunks = []
    while True:
        chunk = bytearray(CHUNK)
        # write every page so it is really resident, not just reserved
        for offset in range(0, CHUNK, PAGE):
            chunk[offset] = 1
        chunks.append(chunk)
        print(f"allocated {len(chunks) * CHUNK // 1024**2} MiB", flush=True)
        time.sleep(0.01)


if __name__ == "__main__":
    main()

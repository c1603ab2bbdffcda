#!/usr/bin/env python3
"""A shuffled data loader, read the way a PyTorch DataLoader with
shuffle=True and num_workers=N reads a map-style dataset of one file per
sample: the main process lists the directory, draws a random permutation,
cuts it into batches, and hands batch i to worker i mod N; each worker is a
process of its own that opens and reads each sample file whole.

Usage: loader.py DIR WORKERS SEED [BATCH]. Prints "FILES BYTES SECONDS".
It needs nothing beyond the standard library, so that it runs wherever the
benchmark does; torch's own loader would add only its collation."""
import multiprocessing as mp
import os
import random
import sys
import time


def work(args):
    paths, = args
    n = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                n += len(b)
    return len(paths), n


def main():
    root, workers, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    began = time.monotonic()
    names = sorted(os.listdir(root))
    random.Random(seed).shuffle(names)
    batches = [[os.path.join(root, n) for n in names[i:i + batch]] for i in range(0, len(names), batch)]
    files = total = 0
    with mp.get_context("fork").Pool(workers) as pool:
        # imap keeps batches in order and workers busy, as the DataLoader's
        # prefetch_factor does.
        for f, n in pool.imap(work, [(b,) for b in batches], chunksize=1):
            files += f
            total += n
    print(files, total, time.monotonic() - began)


if __name__ == "__main__":
    main()

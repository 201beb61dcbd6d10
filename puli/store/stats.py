"""pulistats' tables: farm samples (raw, then downsampled) and summaries of the jobs that ended.

A sample is a flat dict of series ("rn/Working", "by/prod/x/allocated", ...) stored as JSON in
one row. Downsampling keeps raw samples for RAW_KEEP, 5-minute averages for MID_KEEP and hourly
averages for HOUR_KEEP; a downsampled bucket is written only once it is complete, so the three
resolutions never overlap in time. Every call takes the Store's lock (one connection); none is
made under the farm lock.
"""
import json
import math

RAW_KEEP = 2 * 86400.0
MID_KEEP = 30 * 86400.0
HOUR_KEEP = 365 * 86400.0
LEVELS = ((0, 300, "raw_keep"), (300, 3600, "mid_keep"))


def average(samples):
    """The mean of flat samples, a series missing from a sample counting as 0."""
    sums = {}
    for sample in samples:
        for key, value in sample.items():
            sums[key] = sums.get(key, 0.0) + value
    n = len(samples) or 1
    return {key: value / n for key, value in sums.items()}


class StatsStore:
    """Samples and job summaries in the farm's database (a puli.store.Store)."""

    def __init__(self, store, raw_keep=RAW_KEEP, mid_keep=MID_KEEP, hour_keep=HOUR_KEEP):
        self._lock = store._lock
        self._db = store._db
        self.raw_keep, self.mid_keep, self.hour_keep = raw_keep, mid_keep, hour_keep
        self._job_upsert = self._db.upsert("stats_jobs", ("id", "end_time", "data"))

    def write(self, when, sample, jobs=()):
        """One sample and the summaries of jobs that ended since the last one, in one transaction."""
        with self._lock, self._db.transaction(what="writing a stats sample") as cur:
            cur.execute("INSERT INTO stats_samples (time, resolution, data) VALUES (%s, %s, %s)",
                        (when, 0, json.dumps(sample, separators=(",", ":"))))
            cur.executemany(self._job_upsert, [(j["id"], j["end"], json.dumps(j)) for j in jobs])

    def samples(self, start, end):
        """[(time, resolution, sample)] between start and end, oldest first, every resolution."""
        out = []
        with self._lock, self._db.transaction(what="reading stats samples") as cur:
            for resolution in (3600, 300, 0):
                cur.execute("SELECT time, resolution, data FROM stats_samples WHERE resolution = %s "
                            "AND time >= %s AND time <= %s ORDER BY time", (resolution, start, end))
                out.extend(cur.fetchall())
        out.sort(key=lambda row: row[0])
        return [(t, r, json.loads(d)) for t, r, d in out]

    def jobs(self, start, end):
        """Summaries of the jobs that ended between start and end."""
        with self._lock, self._db.transaction(what="reading job summaries") as cur:
            cur.execute("SELECT data FROM stats_jobs WHERE end_time >= %s AND end_time <= %s "
                        "ORDER BY end_time", (start, end))
            return [json.loads(d) for (d,) in cur.fetchall()]

    def job_ids(self):
        with self._lock, self._db.transaction(what="reading job summaries") as cur:
            cur.execute("SELECT id FROM stats_jobs")
            return {i for (i,) in cur.fetchall()}

    def compact(self, now):
        """Downsample what passed its retention and drop hourly rows older than a year."""
        written = 0
        with self._lock, self._db.transaction(what="downsampling stats") as cur:
            for src, dst, keep in LEVELS:
                cutoff = math.floor((now - getattr(self, keep)) / dst) * dst
                cur.execute("SELECT time, data FROM stats_samples WHERE resolution = %s AND time < %s",
                            (src, cutoff))
                buckets = {}
                for t, data in cur.fetchall():
                    buckets.setdefault(math.floor(t / dst) * dst, []).append(json.loads(data))
                cur.executemany("INSERT INTO stats_samples (time, resolution, data) VALUES (%s, %s, %s)",
                                [(t, dst, json.dumps(average(s), separators=(",", ":")))
                                 for t, s in sorted(buckets.items())])
                cur.execute("DELETE FROM stats_samples WHERE resolution = %s AND time < %s", (src, cutoff))
                written += len(buckets)
            cur.execute("DELETE FROM stats_samples WHERE resolution = 3600 AND time < %s",
                        (now - self.hour_keep,))
            cur.execute("DELETE FROM stats_jobs WHERE end_time < %s", (now - self.hour_keep,))
        return written


class MemoryStats:
    """The same interface in memory: a dispatcher without a database, and tests."""

    def __init__(self, raw_keep=RAW_KEEP, mid_keep=MID_KEEP, hour_keep=HOUR_KEEP):
        self.rows = []                  # (time, resolution, sample)
        self.summaries = {}
        self.raw_keep, self.mid_keep, self.hour_keep = raw_keep, mid_keep, hour_keep

    def write(self, when, sample, jobs=()):
        self.rows.append((when, 0, dict(sample)))
        for job in jobs:
            self.summaries[job["id"]] = dict(job)

    def samples(self, start, end):
        return sorted((r for r in self.rows if start <= r[0] <= end), key=lambda r: r[0])

    def jobs(self, start, end):
        return sorted((j for j in self.summaries.values() if start <= j["end"] <= end),
                      key=lambda j: j["end"])

    def job_ids(self):
        return set(self.summaries)

    def compact(self, now):
        written = 0
        for src, dst, keep in LEVELS:
            cutoff = math.floor((now - getattr(self, keep)) / dst) * dst
            buckets, kept = {}, []
            for row in self.rows:
                if row[1] == src and row[0] < cutoff:
                    buckets.setdefault(math.floor(row[0] / dst) * dst, []).append(row[2])
                else:
                    kept.append(row)
            kept.extend((t, dst, average(s)) for t, s in buckets.items())
            self.rows = kept
            written += len(buckets)
        self.rows = [r for r in self.rows if not (r[1] == 3600 and r[0] < now - self.hour_keep)]
        return written

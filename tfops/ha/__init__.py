"""Several `tfops serve` daemons on one store: who may serve, who leads, who is alive.

- `serve_lock`: one daemon per SQLite file (and per data directory), an OS lock held for life.
- `leadership`: the `Leadership` Protocol; SQLite is always leader (guarded by the serve lock),
  PostgreSQL elects one through a session-level advisory lock.
- `instances`: the heartbeat that keeps this daemon's row in `instances` fresh, checks leadership
  at every beat and tells the scheduler when to lead and when to follow.
"""

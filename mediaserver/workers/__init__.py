"""`mediaserver serve --workers N`: N worker processes on one box, one small supervisor.

- ``supervisor``: the parent. Owns the public RTMP and HTTP ports (a SO_REUSEPORT
  group, one listening socket per worker), does the first-start actions once,
  starts the workers, restarts one that dies (with a backoff), forwards
  SIGTERM/SIGINT and exits once every worker has stopped.
- ``worker``: one worker process (``python -m mediaserver.workers.worker``), an
  ordinary node of the cluster serving the sockets it inherited.
- ``handover``: what the supervisor hands a worker (its configuration, its sockets)
  and what a worker reports back (ready, and where other nodes reach it).
- ``restarts``: when a dead worker is started again.

Workers share channels through Redis like nodes on several boxes do; the
supervisor holds no server state and runs no event loop while it supervises.
"""

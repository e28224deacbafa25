"""Several nodes (worker processes, boxes) as one server, through a shared Redis.

- ``registry``: node heartbeats, channel -> origin node, locate() with a short cache.
- ``bus``: the control bus (pub/sub) that carries kicks, blocks and handoffs.
- ``view``: the control API's LiveControl over every node.
- ``gate``: the cluster's say before a publish (blocks, duplicates, takeovers).
- ``failover``: playlist state recorded per segment so another node can carry on.
- ``node``: ``Cluster``, the parts wired to one node's hub.

The hub stays per node and synchronous; nothing here runs on the ingest path
except the gate, once per publish.
"""

from .node import Cluster, ClusterSettings

__all__ = ["Cluster", "ClusterSettings"]

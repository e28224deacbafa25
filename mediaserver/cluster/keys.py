"""The cluster layer's Redis keys, beside the store's own (control_api.redis_store).

  ms:node:{id}        hash  address (http://host:port), pid, started_at; TTL NODE_TTL
  ms:nodes            set   node ids, pruned of those whose ms:node key has lapsed
  ms:streams:{id}     hash  channel -> StreamStats JSON of that node's streams; TTL NODE_TTL
  ms:online:{channel} str   id of the node holding the publisher (the origin); TTL NODE_TTL
  ms:block:{channel}  str   the reason; TTL the block's length
  ms:resume:{channel} hash  playlist state to carry on after a move; TTL grace + margin
  ms:control          pub/sub channel of the control bus
ms:online is the store's own key (its online_channels() lists it): the cluster
writes it with the short TTL, so "live" in the API lapses with the node.
"""

from __future__ import annotations

from control_api.redis_store import ONLINE_PREFIX, PREFIX

NODE_PREFIX = PREFIX + "node:"
NODES_SET = PREFIX + "nodes"
STREAMS_PREFIX = PREFIX + "streams:"
BLOCK_PREFIX = PREFIX + "block:"
RESUME_PREFIX = PREFIX + "resume:"
CONTROL_CHANNEL = PREFIX + "control"

__all__ = [
    "BLOCK_PREFIX",
    "CONTROL_CHANNEL",
    "NODES_SET",
    "NODE_PREFIX",
    "ONLINE_PREFIX",
    "RESUME_PREFIX",
    "STREAMS_PREFIX",
]

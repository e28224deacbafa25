"""The throwaway redis-server of the tests lives with the benchmarks, which need it too."""

from benchmarks.redis_server import REDIS_SERVER, RedisServer, free_port, ping

__all__ = ["REDIS_SERVER", "RedisServer", "free_port", "ping"]

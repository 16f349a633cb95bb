"""Cross-client tests of the cache server (memcached text protocol)."""

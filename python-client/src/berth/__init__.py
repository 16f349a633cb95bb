"""Berth's library for apps: the runtime contract (`berth.config`), the app's cache
(`berth.cache`) and its persistent storage (`berth.blobs`), each a plain module to import
where it is needed.
"""

from berth import blobs, cache, config

__all__ = ["__version__", "blobs", "cache", "config"]

#: The version of this package.
__version__ = "0.1.0"

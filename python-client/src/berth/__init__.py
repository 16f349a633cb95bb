"""Berth's library for apps: the runtime contract (`berth.config`), the app's cache
(`berth.cache`), persistent storage (`berth.blobs`), database (`berth.db`), the system log
handler (`berth.logging`), the WSGI runtime (`berth.runtime`) and test helpers
(`berth.testing`), each a plain module to import where it is needed.
"""

from berth import blobs, cache, config

__all__ = ["__version__", "blobs", "cache", "config"]

#: The version of this package.
__version__ = "0.1.0"

"""Berth's library for apps: the runtime contract (`berth.config`) and the app's cache
(`berth.cache`), each a plain module to import where it is needed.
"""

from berth import cache, config

__all__ = ["__version__", "cache", "config"]

#: The version of this package.
__version__ = "0.1.0"

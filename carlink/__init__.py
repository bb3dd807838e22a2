"""carlink: utility-aware bandwidth allocation for cloud-augmented autonomous driving.

The distribution is one import name. Core types live here in carlink/; every top-level folder of
the repository imports as a sub-package (``carlink.allocator``, ``carlink.datasets``, ...).
"""

__version__ = "0.1.0"

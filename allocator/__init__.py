"""carlink.allocator"""

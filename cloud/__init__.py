"""carlink.cloud"""

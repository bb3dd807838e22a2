"""carlink.replay"""

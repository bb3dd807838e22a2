"""carlink.onboard"""

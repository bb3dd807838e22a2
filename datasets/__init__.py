"""carlink.datasets"""

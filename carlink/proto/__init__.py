"""Generated protocol buffer code for carlink.v1 (regenerate with: python -m carlink.proto.generate)."""
